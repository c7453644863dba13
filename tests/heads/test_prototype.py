"""PrototypeProbe agrees with a hand-written NumPy nearest-centroid, is centring-invariant, and guards inputs."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

from probe.errors import HeadError, NotFittedError
from probe.heads.prototype import PrototypeProbe


def make_blobs(n: int, d: int = 12, classes: tuple[int, ...] = (1, 4, 6), seed: int = 0):
    """Gaussian blobs with non-contiguous labels, offset from the origin (so centring matters)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(len(classes), d)) + 3.0
    codes = np.arange(n) % len(classes)
    x = (means[codes] + rng.normal(size=(n, d))).astype(np.float32)
    return x, np.asarray(classes)[codes]


def ref_prototypes(xs, ys, xq, method: str, temperature: float):
    """Nearest-centroid by loops: (scores, proba, labels)."""
    xs, xq = xs.astype(np.float64), xq.astype(np.float64)
    classes = np.unique(ys)
    if method in ("simpleshot", "cosine"):
        mean = xs.mean(axis=0)
        xs = np.array([(r - mean) / np.linalg.norm(r - mean) for r in xs])
        xq = np.array([(r - mean) / np.linalg.norm(r - mean) for r in xq])
    centroids = [xs[ys == c].mean(axis=0) for c in classes]
    if method == "cosine":
        centroids = [c / np.linalg.norm(c) for c in centroids]
        scores = np.array([[q @ c for c in centroids] for q in xq])
    else:
        scores = np.array([[-np.sum((q - c) ** 2) for c in centroids] for q in xq])
    e = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
    return scores, e / e.sum(axis=1, keepdims=True), classes[np.argmax(scores, axis=1)]


@pytest.mark.parametrize(("method", "temperature"), [("simpleshot", 0.1), ("cosine", 0.1), ("centroid", 10.0)])
def test_matches_numpy_reference(method: str, temperature: float) -> None:
    xs, ys = make_blobs(30, seed=1)
    xq, _ = make_blobs(20, seed=2)
    probe = PrototypeProbe(method=method, temperature=temperature).fit(xs, ys)
    scores, proba, labels = ref_prototypes(xs, ys, xq, method, temperature)
    assert probe.centroids_.shape == (3, 12) and probe.n_features_in_ == 12
    assert_array_equal(probe.classes_, [1, 4, 6])
    assert_allclose(probe.decision_function(xq), scores, rtol=1e-9, atol=1e-9)
    assert_allclose(probe.predict_proba(xq), proba, atol=1e-9)
    assert_allclose(probe.predict_proba(xq).sum(axis=1), 1.0)
    assert_array_equal(probe.predict(xq), labels)
    assert (method != "centroid") == hasattr(probe, "mean_")


def test_simpleshot_equals_nearest_centroid_on_cl2n_features() -> None:
    """SimpleShot as published: centre on a base (train-pool) mean, L2-normalise, Euclidean nearest class mean."""
    from sklearn.neighbors import NearestCentroid

    pool, _ = make_blobs(200, seed=10)
    xs, ys = make_blobs(15, seed=11)
    xq, _ = make_blobs(300, seed=12)
    mean = pool.astype(np.float64).mean(axis=0)

    def cl2n(x: np.ndarray) -> np.ndarray:
        z = x.astype(np.float64) - mean
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    probe = PrototypeProbe(method="simpleshot", mean=mean).fit(xs, ys)
    reference = NearestCentroid().fit(cl2n(xs), ys)
    assert_array_equal(probe.predict(xq), reference.predict(cl2n(xq)))
    assert_allclose(probe.centroids_, reference.centroids_, atol=1e-12)
    assert_allclose(probe.mean_, mean)
    cosine = PrototypeProbe(method="cosine", mean=mean).fit(xs, ys)
    assert_allclose(np.linalg.norm(cosine.centroids_, axis=1), 1.0)  # the cosine rule re-normalises; simpleshot not
    with pytest.raises(HeadError, match=r"PrototypeProbe\(mean=...\) has shape \(3,\); pass \(12,\)"):
        PrototypeProbe(mean=np.zeros(3)).fit(xs, ys)


def test_simpleshot_is_invariant_to_a_constant_shift() -> None:
    xs, ys = make_blobs(30, seed=3)
    xq, _ = make_blobs(25, seed=4)
    shift = np.random.default_rng(5).normal(scale=50.0, size=12).astype(np.float32)
    plain = PrototypeProbe().fit(xs, ys)
    shifted = PrototypeProbe().fit(xs + shift, ys)
    assert_allclose(shifted.predict_proba(xq + shift), plain.predict_proba(xq), atol=1e-4)
    assert_array_equal(shifted.predict(xq + shift), plain.predict(xq))
    assert_allclose(shifted.mean_ - plain.mean_, shift, rtol=1e-5)


@pytest.mark.parametrize("method", ["simpleshot", "cosine", "centroid"])
def test_ties_go_to_the_smallest_label(method: str) -> None:
    xs = np.array([[1, 0], [-1, 0]], dtype=np.float32)
    probe = PrototypeProbe(method=method).fit(xs, [5, 3])
    assert_allclose(probe.predict_proba([[0, 1]]), [[0.5, 0.5]])
    assert_array_equal(probe.predict([[0, 1]]), [3])
    assert_array_equal(probe.predict(xs), [5, 3])


@pytest.mark.parametrize("method", ["simpleshot", "cosine", "centroid"])
def test_one_shot_support_recovers_its_own_labels(method: str) -> None:
    rng = np.random.default_rng(6)
    xs = rng.normal(size=(5, 32)).astype(np.float32)
    ys = np.array([9, 0, 7, 3, 5])
    probe = PrototypeProbe(method=method).fit(xs, ys)
    assert_array_equal(probe.classes_, [0, 3, 5, 7, 9])
    assert_array_equal(probe.predict(xs), ys)
    assert probe.predict_proba(xs + 0.01).shape == (5, 5)


def test_sklearn_contract() -> None:
    xs, ys = make_blobs(12, seed=7)
    probe = PrototypeProbe(method="centroid", temperature=2.0)
    assert probe.get_params() == {"method": "centroid", "temperature": 2.0, "mean": None}
    assert probe.fit(xs, ys) is probe
    assert not hasattr(clone(probe), "centroids_")
    assert probe.score(xs, ys) == 1.0


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"method": "protonet"},
            r"PrototypeProbe\(method='protonet'\) is unknown; use one of simpleshot, cosine, centroid",
        ),
        ({"temperature": 0.0}, r"temperature must be a finite number > 0; got 0.0"),
        ({"temperature": -1}, r"temperature must be a finite number > 0; got -1"),
        ({"temperature": float("inf")}, r"temperature must be a finite number > 0; got inf"),
    ],
)
def test_invalid_parameters_are_named(params: dict, match: str) -> None:
    xs, ys = make_blobs(12, seed=8)
    with pytest.raises(HeadError, match=match):
        PrototypeProbe(**params).fit(xs, ys)


def test_invalid_inputs_are_named() -> None:
    xs, ys = make_blobs(12, seed=9)
    with pytest.raises(NotFittedError, match=r"this PrototypeProbe is not fitted yet; call fit"):
        PrototypeProbe().predict(xs)
    bad = xs.copy()
    bad[2, 0] = np.inf
    with pytest.raises(HeadError, match=r"NaN/inf in 1 row\(s\) \(first: \[2\]\)"):
        PrototypeProbe().fit(bad, ys)
    probe = PrototypeProbe().fit(xs, ys)
    with pytest.raises(HeadError, match=r"NaN/inf"):
        probe.predict_proba(bad)
    with pytest.raises(HeadError, match=r"has 11 features but the head was fitted on 12"):
        probe.predict(xs[:, :11])
    with pytest.raises(HeadError, match=r"integer class indices; got dtype <U1"):
        probe.fit(xs, np.array(list("abcabcabcabc")))


def test_scores_of_transformed_rows_equal_the_plain_path() -> None:
    rng = np.random.default_rng(4)
    X, y, Q = rng.normal(size=(30, 6)), np.repeat(np.arange(3), 10), rng.normal(size=(12, 6))
    mean = rng.normal(size=6)
    for method in ("simpleshot", "cosine", "centroid"):
        probe = PrototypeProbe(method=method, mean=None if method == "centroid" else mean).fit(X, y)
        Z = probe.transform(Q)
        np.testing.assert_array_equal(probe.decision_function(Z, transformed=True), probe.decision_function(Q))
        np.testing.assert_array_equal(probe.predict_proba(Z, transformed=True), probe.predict_proba(Q))
    with pytest.raises(HeadError, match=r"transformed rows must be \(n, 6\)"):
        probe.decision_function(Z[:, :3], transformed=True)
