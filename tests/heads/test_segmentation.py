"""Segmentation heads: patch targets, upsampling, and the linear, kNN and conv heads against references."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from probe.errors import HeadError, NotFittedError
from probe.heads._seg_targets import patch_targets, pool_statistics, predict_maps, softmax_maps, upsample_logits
from probe.heads.seg_conv import SegConvProbe
from probe.heads.seg_knn import SegKNNProbe
from probe.heads.seg_linear import SegLinearProbe, fit_seg_linear_batch

N, S, G, D, K = 6, 16, 4, 8, 3


def _masks(n: int = N, size: int = S, *, seed: int = 0) -> np.ndarray:
    """A square of class 1 and a disc of class 2 on background 0, the bottom rows of images 0 and 1 ignored."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        a, b = rng.integers(0, size - 7, 2)
        side = rng.integers(4, 8)
        masks[i, a : a + side, b : b + side] = 1
        cy, cx = rng.uniform(3, size - 3, 2)
        masks[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(2.5, 4.5) ** 2] = 2
    masks[0, -G:] = 255  # a row of cells without a valid pixel
    masks[1, -2:] = 255  # cells half ignored
    return masks


def _features(masks: np.ndarray, *, n_classes: int = K, noise: float = 0.3, seed: int = 1) -> np.ndarray:
    """(n, G, G, D) float16 features: the patch class fractions through a random projection, plus noise."""
    rng = np.random.default_rng(seed)
    frac = _reference_targets(masks, (G, G), n_classes)
    proj = rng.normal(size=(n_classes, D)) * 2.0
    return (frac @ proj + rng.normal(scale=noise, size=(*frac.shape[:3], D))).astype(np.float16)


def _reference_targets(masks: np.ndarray, grid: tuple[int, int], n_classes: int) -> np.ndarray:
    """Plain loop over cells, with PyTorch's adaptive bins [floor(i H / h), ceil((i + 1) H / h))."""
    n, H, W = masks.shape
    h, w = grid
    out = np.zeros((n, h, w, n_classes), np.float32)
    for i in range(n):
        for r in range(h):
            for c in range(w):
                block = masks[i, (r * H) // h : -((-(r + 1) * H) // h), (c * W) // w : -((-(c + 1) * W) // w)]
                valid = block[block != 255]
                if valid.size:
                    out[i, r, c] = np.bincount(valid, minlength=n_classes) / valid.size
    return out


MASKS = _masks()
X = _features(MASKS)


def _expanded(masks: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frac = _reference_targets(masks, (G, G), n_classes).reshape(-1, n_classes)
    p, c = np.nonzero(frac)
    return p, c, frac[p, c].astype(np.float64)


@pytest.mark.parametrize(("shape", "grid"), [((S, S), (G, G)), ((S, S), (3, 5)), ((13, 16), (4, 3))])
def test_patch_targets_match_a_loop(shape: tuple[int, int], grid: tuple[int, int]) -> None:
    masks = np.random.default_rng(3).integers(0, 4, size=(3, *shape)).astype(np.uint8)
    masks[masks == 3] = 255
    masks[1, : shape[0] // 2 + 1] = 255  # whole cells without a valid pixel
    got = patch_targets(masks, grid=grid, n_classes=3)
    ref = _reference_targets(masks, grid, 3)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert got.shape == (3, *grid, 3) and got.dtype == np.float32
    assert (got[1, 0] == 0).all()
    np.testing.assert_allclose(got.sum(-1)[got.sum(-1) > 0], 1.0, atol=1e-6)


def test_upsampling_keeps_absent_classes_out() -> None:
    z = np.random.default_rng(4).normal(size=(3, G, G, 4)).astype(np.float32)
    z[..., 2] = -np.inf
    up = upsample_logits(z, S)
    live = [0, 1, 3]
    ref = F.interpolate(torch.from_numpy(z[..., live]).permute(0, 3, 1, 2), size=(S, S), mode="bilinear")
    np.testing.assert_allclose(up[:, live], ref.numpy(), atol=1e-6)
    assert up.shape == (3, 4, S, S) and np.isneginf(up[:, 2]).all()
    proba = softmax_maps(z, (S, 20))
    assert proba.shape == (3, 4, S, 20) and (proba[:, 2] == 0).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    maps = predict_maps(z, S)
    assert maps.dtype == np.uint8 and maps.shape == (3, S, S)
    np.testing.assert_array_equal(maps, np.asarray(live)[ref.argmax(1).numpy()])


def test_pool_statistics_match_numpy() -> None:
    x = X.copy()
    x[..., 3] = 2.0  # constant feature: scale 1
    mean, std = pool_statistics(x)
    flat = x.reshape(-1, D).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-12)
    ref = flat.std(0)
    ref[3] = 1.0
    np.testing.assert_allclose(std, ref, rtol=1e-10)


def _sklearn_patch_proba(masks: np.ndarray, n_classes: int, C: float) -> tuple[np.ndarray, np.ndarray]:
    p, c, w = _expanded(masks, n_classes)
    xp = X.reshape(-1, D).astype(np.float32).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(xp[p], c, sample_weight=w)
    return clf.predict_proba(xp), clf.classes_


@pytest.mark.parametrize(
    ("case", "n_classes", "C"), [("three", 3, 0.5), ("absent", 4, 2.0), ("binary", 2, 1.0), ("binary-of-3", 3, 1.0)]
)
def test_linear_matches_sklearn_on_weighted_copies(case: str, n_classes: int, C: float) -> None:
    masks = MASKS.copy()
    if case.startswith("binary"):
        masks[masks == 2] = 1
    ref, classes = _sklearn_patch_proba(masks, n_classes, C)
    probe = SegLinearProbe(C=C, tol=1e-10, max_iter=5000, device="cpu", precision="float64")
    probe.fit(X, masks, n_classes=n_classes)
    assert probe.classes_.tolist() == classes.tolist() and probe.n_classes_ == n_classes
    assert probe.coef_.shape == ((1, D) if classes.size == 2 else (classes.size, D))
    assert probe.grid_ == (G, G) and probe.mask_size_ == (S, S) and probe.n_features_in_ == D
    got = probe.predict_patch_proba(X).reshape(-1, n_classes)
    np.testing.assert_allclose(got[:, classes], ref, atol=1e-4)
    absent = np.setdiff1d(np.arange(n_classes), classes)
    assert (got[:, absent] == 0).all()
    proba = probe.predict_proba(X)
    assert proba.shape == (N, n_classes, S, S)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    pred = probe.predict(X)
    assert pred.dtype == np.uint8 and pred.shape == (N, S, S) and np.isin(pred, classes).all()
    np.testing.assert_array_equal(pred, proba.argmax(1))
    assert probe.predict(X[:2], size=(24, 20)).shape == (2, 24, 20)


def test_linear_learns_the_synthetic_task() -> None:
    probe = SegLinearProbe(device="cpu").fit(X, MASKS)
    valid = MASKS != 255
    assert np.mean(probe.predict(X)[valid] == MASKS[valid]) > 0.8


def test_batch_fit_equals_separate_fits() -> None:
    draws = [np.arange(3), np.array([0, 0, 1, 4]), np.arange(3)]  # the first and last share rows
    Cs = [0.5, 2.0, 4.0]
    opts = {"max_iter": 5000, "tol": 1e-10, "device": "cpu", "precision": "float64"}
    batch = fit_seg_linear_batch(X, MASKS, draws, Cs, n_classes=4, **opts)
    for draw, C, got in zip(draws, Cs, batch, strict=True):
        ref = SegLinearProbe(C=C, **opts).fit(X[draw], MASKS[draw], n_classes=4)
        assert got.C == C and got.classes_.tolist() == ref.classes_.tolist() == [0, 1, 2]
        np.testing.assert_allclose(got.coef_, ref.coef_, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.intercept_, ref.intercept_, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.predict_proba(X), ref.predict_proba(X), atol=1e-5)


def _knn_reference(x_train: np.ndarray, masks: np.ndarray, x_query: np.ndarray, k: int, t: float) -> np.ndarray:
    frac = _reference_targets(masks, (G, G), K).reshape(-1, K)
    keep = frac.sum(1) > 0
    xb = x_train.reshape(-1, D).astype(np.float64)[keep]
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq = x_query.reshape(-1, D).astype(np.float64)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    sims = xq @ xb.T
    top = np.argsort(-sims, axis=1)[:, :k]
    s = np.take_along_axis(sims, top, axis=1) / t
    w = np.exp(s - s.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    return np.einsum("qj,qjc->qc", w, frac[keep][top]).reshape(*x_query.shape[:3], K)


@pytest.mark.parametrize(("k", "t"), [(1, 0.07), (5, 0.07), (20, 0.5)])
def test_knn_matches_brute_force(k: int, t: float) -> None:
    probe = SegKNNProbe(k=k, temperature=t, device="cpu").fit(X[:4], MASKS[:4])
    got = probe.predict_patch_proba(X[4:])
    np.testing.assert_allclose(got, _knn_reference(X[:4], MASKS[:4], X[4:], k, t), atol=1e-5)
    assert probe.bank_.shape == (4 * G * G - G, D)  # image 0's last row of cells is ignored
    proba = probe.predict_proba(X[4:])
    assert proba.shape == (2, K, S, S)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probe.predict(X[4:]), proba.argmax(1))
    clone = pickle.loads(pickle.dumps(probe))
    np.testing.assert_array_equal(clone.predict_patch_proba(X[4:]), got)


def test_knn_caps_k_at_the_bank() -> None:
    masks = np.full((1, S, S), 255, np.uint8)
    masks[0, :4, :8] = [0, 1] * 4  # two labelled patches
    probe = SegKNNProbe(k=50, device="cpu").fit(X[:1], masks)
    assert probe.k_ == 2 and probe.bank_.shape == (2, D)
    assert probe.predict(X).shape == (N, S, S)


def test_conv_learns_and_is_deterministic() -> None:
    params = {"hidden": 16, "epochs": 20, "lr": 1e-2, "batch_size": 4, "device": "cpu"}
    state = torch.get_rng_state()
    a = SegConvProbe(**params, seed=3).fit(X, MASKS)
    assert torch.equal(torch.get_rng_state(), state)
    b = SegConvProbe(**params, seed=3).fit(X, MASKS)
    c = SegConvProbe(**params, seed=4).fit(X, MASKS)
    valid = MASKS != 255
    pred = a.predict(X)
    assert pred.dtype == np.uint8 and pred.shape == (N, S, S)
    assert np.mean(pred[valid] == MASKS[valid]) > 0.8
    assert len(a.loss_curve_) == 20 and a.loss_curve_[-1] < a.loss_curve_[0]
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    assert a.predict_proba(X, size=8).shape == (N, K, 8, 8)


HEADS = [
    SegLinearProbe(device="cpu"),
    SegKNNProbe(device="cpu"),
    SegConvProbe(hidden=4, epochs=1, device="cpu"),
]


@pytest.mark.parametrize("head", HEADS, ids=lambda h: type(h).__name__)
def test_inputs_are_checked(head: SegLinearProbe | SegKNNProbe | SegConvProbe) -> None:
    name = type(head).__name__
    with pytest.raises(NotFittedError, match=rf"this {name} is not fitted yet; call fit\(X, masks\)"):
        head.predict(X)
    with pytest.raises(HeadError, match=r"X has shape \(6, 4, 8\); pass patch features of shape \(n, h, w, d\)"):
        head.fit(X[:, 0], MASKS)
    with pytest.raises(HeadError, match=r"masks have shape \(6, 16\); pass class maps of shape \(n, H, W\)"):
        head.fit(X, MASKS[:, 0])
    with pytest.raises(HeadError, match=r"5 masks for 6 feature images"):
        head.fit(X, MASKS[:5])
    bad = MASKS.copy()
    bad[2, 3, 3] = 7
    with pytest.raises(HeadError, match=rf"{name}: masks hold label 7 but n_classes=3; pass n_classes=8 or mark"):
        head.fit(X, bad, n_classes=3)
    with pytest.raises(HeadError, match=r"masks have dtype float32; pass integer class maps"):
        head.fit(X, MASKS.astype(np.float32))
    with pytest.raises(HeadError, match=r"the patch grid \(4, 4\) is finer than the masks \(2, 2\)"):
        head.fit(X, MASKS[:, :2, :2])
    with pytest.raises(HeadError, match=rf"{name}\(n_classes=1\) must be an int in \[2, 255\]"):
        head.fit(X, MASKS, n_classes=1)
    fitted = head.fit(X, MASKS)
    with pytest.raises(HeadError, match=r"X has 7 features but the head was fitted on 8"):
        fitted.predict(X[..., :7])
    nan = X.astype(np.float32)
    nan[4, 0, 0, 0] = np.nan
    with pytest.raises(HeadError, match=r"NaN/inf in 1 image\(s\) \(first: \[4\]\)"):
        fitted.predict(nan)
    with pytest.raises(HeadError, match=r"size=0\) must be an int >= 1"):
        fitted.predict(X, size=0)


@pytest.mark.parametrize(
    ("head", "match"),
    [
        (SegLinearProbe(C=-1), r"SegLinearProbe\(C=-1\) must be a finite number > 0"),
        (SegLinearProbe(tol=0), r"SegLinearProbe\(tol=0\) must be a finite number > 0"),
        (SegLinearProbe(device="tpu"), r"SegLinearProbe\(device='tpu'\) is not a device"),
        (SegLinearProbe(precision="half"), r"SegLinearProbe\(precision='half'\) is unknown"),
        (SegKNNProbe(k=0), r"SegKNNProbe\(k=0\) must be an int > 0"),
        (SegKNNProbe(temperature=0.0), r"SegKNNProbe\(temperature=0.0\) must be a finite number > 0"),
        (SegKNNProbe(device="mps"), r"SegKNNProbe\(device='mps'\): FAISS searches on the CPU or CUDA"),
        (SegConvProbe(hidden=0), r"SegConvProbe\(hidden=0\) must be an int > 0"),
        (SegConvProbe(lr=float("nan")), r"SegConvProbe\(lr=nan\) must be a finite number > 0"),
        (SegConvProbe(weight_decay=-1.0), r"SegConvProbe\(weight_decay=-1.0\) must be a finite number >= 0"),
        (SegConvProbe(device="tpu"), r"SegConvProbe\(device='tpu'\) is not a device"),
    ],
)
def test_parameters_are_named(head: SegLinearProbe | SegKNNProbe | SegConvProbe, match: str) -> None:
    with pytest.raises(HeadError, match=match):
        head.fit(X, MASKS)


def test_batch_fit_errors() -> None:
    with pytest.raises(HeadError, match=r"2 draws but 1 Cs; pass one C per draw"):
        fit_seg_linear_batch(X, MASKS, [np.arange(2), np.arange(3)], [1.0], n_classes=3, device="cpu")
    with pytest.raises(HeadError, match=r"draw 0 holds image 9 but X has 6 images"):
        fit_seg_linear_batch(X, MASKS, [np.array([0, 9])], [1.0], n_classes=3, device="cpu")
    only_background = MASKS.copy()
    only_background[:2] = 0
    with pytest.raises(HeadError, match=r"draw 1's masks hold only class\(es\) \[0\]; .* at least two classes"):
        fit_seg_linear_batch(X, only_background, [np.arange(6), np.arange(2)], [1.0, 2.0], n_classes=3, device="cpu")
    with pytest.raises(HeadError, match=r"SegLinearProbe: the masks hold only class\(es\) \[0\]"):
        SegLinearProbe(device="cpu").fit(X[:2], only_background[:2])
    with pytest.raises(HeadError, match=r"every mask pixel is 255"):
        SegKNNProbe(device="cpu").fit(X, np.full_like(MASKS, 255))
