"""KNNProbe agrees with a brute-force NumPy kNN and with scikit-learn, tie-aware, and guards its inputs."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.neighbors import KNeighborsClassifier

from probe.errors import DeviceError, HeadError, NotFittedError
from probe.heads.knn import DISTANCE_EPS, KNNProbe

VOTES = ("temperature", "uniform", "distance")
T = 0.07


def make_blobs(n: int, d: int = 16, classes: tuple[int, ...] = (0, 2, 5, 9), seed: int = 0):
    """Continuous Gaussian blobs (no tied similarities) with non-contiguous labels."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(len(classes), d))
    codes = rng.integers(len(classes), size=n)
    x = (means[codes] + rng.normal(scale=1.5, size=(n, d))).astype(np.float32)
    return x, np.asarray(classes)[codes]


def ref_sims(xq: np.ndarray, xb: np.ndarray, normalize: bool = True) -> np.ndarray:
    """(nq, nb) float64 cosine (or inner-product) similarities."""
    q, b = xq.astype(np.float64), xb.astype(np.float64)
    if normalize:
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return q @ b.T


def ref_vote(sims: np.ndarray, labels: np.ndarray, classes: np.ndarray, vote: str) -> np.ndarray:
    """(nq, n_classes) vote shares from the (nq, k) similarities and labels of chosen neighbours, by loops."""
    proba = np.zeros((sims.shape[0], classes.size))
    for i in range(sims.shape[0]):
        for s, label in zip(sims[i], labels[i], strict=True):
            if vote == "uniform":
                w = 1.0
            elif vote == "distance":
                w = 1.0 / (max(1.0 - s, 0.0) + DISTANCE_EPS)
            else:
                w = np.exp(s / T)
            proba[i, np.searchsorted(classes, label)] += w
    return proba / proba.sum(axis=1, keepdims=True)


def ref_knn(xq, xb, yb, k: int, vote: str, normalize: bool = True):
    """Brute-force kNN: (proba, labels, boundary gap between the k-th and (k+1)-th similarity)."""
    sims = ref_sims(xq, xb, normalize)
    order = np.argsort(-sims, axis=1, kind="stable")
    top = np.take_along_axis(sims, order, axis=1)
    classes = np.unique(yb)
    proba = ref_vote(top[:, :k], yb[order[:, :k]], classes, vote)
    gap = top[:, k - 1] - top[:, k] if k < xb.shape[0] else np.full(len(xq), np.inf)
    return proba, classes[np.argmax(proba, axis=1)], gap


def assert_valid_topk(sims: np.ndarray, idx: np.ndarray, full: np.ndarray, atol: float = 1e-5) -> None:
    """(sims, idx) is *a* correct top-k of ``full`` (nq, nb), whichever tied rows it picked."""
    k = idx.shape[1]
    assert all(np.unique(row).size == k for row in idx), "a neighbour is repeated"
    assert_allclose(sims, np.take_along_axis(full, idx, axis=1), atol=atol)  # each sim is its row's true sim
    assert_allclose(sims, -np.sort(-full, axis=1)[:, :k], atol=atol)  # and they are the k largest


@pytest.mark.parametrize("vote", VOTES)
def test_matches_numpy_reference_for_every_k_from_one_search(vote: str) -> None:
    xb, yb = make_blobs(200, seed=1)
    xq, _ = make_blobs(50, seed=2)
    ks = [1, 3, 10, 25]
    probe = KNNProbe(k=ks, vote=vote, temperature=T, device="cpu").fit(xb, yb)
    proba_all, labels_all = probe.predict_proba_all(xq), probe.predict_all(xq)
    assert list(proba_all) == ks and list(labels_all) == ks
    for k in ks:
        proba, labels, gap = ref_knn(xq, xb, yb, k, vote)
        assert gap.min() > 1e-4, "the synthetic data must have no near-tie at the k boundary"
        assert proba_all[k].shape == (50, 4)
        assert_allclose(proba_all[k], proba, atol=1e-5)
        assert_array_equal(labels_all[k], labels)
        single = KNNProbe(k=k, vote=vote, temperature=T, device="cpu").fit(xb, yb)
        assert_allclose(single.predict_proba(xq), proba_all[k], atol=1e-12)
        assert_array_equal(single.predict(xq), labels)


@pytest.mark.parametrize("vote", ["temperature", "uniform"])
def test_raw_inner_product_without_normalize(vote: str) -> None:
    xb, yb = make_blobs(120, seed=3)
    xq, _ = make_blobs(30, seed=4)
    probe = KNNProbe(k=7, vote=vote, temperature=5.0, normalize=False, device="cpu").fit(xb, yb)
    sims = ref_sims(xq, xb, normalize=False)
    sims_f, idx = probe.search(xq)
    assert_valid_topk(sims_f, idx, sims, atol=1e-3)
    top = -np.sort(-sims, axis=1)[:, :7]
    expected = np.exp((top - top[:, :1]) / 5.0) if vote == "temperature" else np.ones_like(top)
    mass = np.stack([(expected * (yb[idx] == c)).sum(axis=1) for c in probe.classes_], axis=1)
    assert_allclose(probe.predict_proba(xq), mass / mass.sum(axis=1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("vote", VOTES)
def test_tie_aware_with_duplicate_training_rows(vote: str) -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=(30, 8)).astype(np.float32)
    xb = np.repeat(base, 3, axis=0)  # each row three times, with independent labels
    yb = rng.integers(3, size=xb.shape[0])
    xq = rng.normal(size=(40, 8)).astype(np.float32)
    ks = [2, 4, 5]
    probe = KNNProbe(k=ks, vote=vote, temperature=T, device="cpu").fit(xb, yb)
    full = ref_sims(xq, xb)
    sims, idx = probe.search(xq)
    assert_valid_topk(sims, idx, full)
    proba_all = probe.predict_proba_all(xq)
    n_tied = 0
    for k in ks:
        # Whichever tied duplicates FAISS picked, the vote must be the one of exactly those neighbours ...
        chosen = ref_vote(np.take_along_axis(full, idx[:, :k], axis=1), yb[idx[:, :k]], probe.classes_, vote)
        assert_allclose(proba_all[k], chosen, atol=1e-5)
        # ... and rows without a tie at the k boundary must match the reference exactly.
        proba, labels, gap = ref_knn(xq, xb, yb, k, vote)
        clear = gap > 1e-6
        n_tied += int((~clear).sum())
        assert_allclose(proba_all[k][clear], proba[clear], atol=1e-5)
        assert_array_equal(probe.classes_[np.argmax(proba_all[k][clear], axis=1)], labels[clear])
    assert n_tied > 0, "k=2, 4, 5 cut through groups of three duplicates: some rows must tie"


def load_breastmnist(root: Path) -> tuple[np.ndarray, ...]:
    """Flattened BreastMNIST pixels in [0, 1] centred on the train mean: train, labels, test+val queries.

    Centring spreads the cosine similarities of all-positive pixel vectors, which leaves no
    k-th/(k+1)-th near-tie at k = 1, 5, 20 (raw pixels have two within 1e-6 at k=20).
    """
    with np.load(root / "breastmnist.npz") as z:
        xb = z["train_images"].reshape(len(z["train_images"]), -1).astype(np.float32) / 255
        yb = z["train_labels"][:, 0].astype(np.int64)
        xq = np.concatenate([z["test_images"], z["val_images"]]).reshape(-1, xb.shape[1]).astype(np.float32) / 255
    mean = xb.mean(axis=0)
    return xb - mean, yb, xq - mean


@pytest.mark.parametrize("vote", ["uniform", "temperature"])
def test_matches_sklearn_on_breastmnist(medmnist_root: Path, vote: str) -> None:
    xb, yb, xq = load_breastmnist(medmnist_root)
    ks = [1, 5, 20]
    probe = KNNProbe(k=ks, vote=vote, temperature=T, device="cpu").fit(xb, yb)
    proba_all, labels_all = probe.predict_proba_all(xq), probe.predict_all(xq)
    top = -np.sort(-ref_sims(xq, xb), axis=1)
    for k in ks:
        weights = "uniform" if vote == "uniform" else (lambda d: np.exp((1 - d) / T))
        sk = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="cosine", weights=weights).fit(xb, yb)
        clear = np.abs(top[:, k - 1] - top[:, k]) > 1e-6  # a k-th/(k+1)-th tie makes the answer ambiguous
        assert (~clear).sum() <= len(xq) // 100, f"{(~clear).sum()} of {len(xq)} rows tie at k={k}"
        assert_array_equal(labels_all[k][clear], sk.predict(xq)[clear])
        assert_allclose(proba_all[k][clear], sk.predict_proba(xq)[clear], atol=1e-5)


def test_ties_go_to_the_smallest_label() -> None:
    xb = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    probe = KNNProbe(k=2, vote="temperature", device="cpu").fit(xb, [7, 2, 7])
    assert_allclose(probe.predict_proba([[1, 0]]), [[0.5, 0.5]])
    assert_array_equal(probe.predict([[1, 0]]), [2])
    uniform = KNNProbe(k=[2, 3], vote="uniform", device="cpu").fit(xb, [7, 2, 7])
    assert_array_equal(uniform.predict_all([[1, 0]])[2], [2])
    assert_array_equal(uniform.predict_all([[1, 0]])[3], [7])


def test_zero_rows_stay_zero_and_vote_with_similarity_zero() -> None:
    xb = np.array([[1, 0], [0, 0], [-1, 0]], dtype=np.float32)
    probe = KNNProbe(k=1, vote="uniform", device="cpu").fit(xb, [0, 1, 2])
    sims, _ = probe.search(np.array([[0, 1]], dtype=np.float32), k=3)
    assert_allclose(sims, [[0, 0, 0]])
    assert_array_equal(probe.predict([[2, 0]]), [0])


def test_sklearn_contract_clone_pickle_and_deepcopy() -> None:
    xb, yb = make_blobs(60, seed=6)
    probe = KNNProbe(k=[3, 5], vote="distance", device="cpu")
    params = {"k": [3, 5], "vote": "distance", "temperature": 0.07, "normalize": True, "device": "cpu"}
    assert probe.get_params() == params
    assert probe.fit(xb, yb) is probe
    assert probe.n_features_in_ == 16 and probe.n_samples_fit_ == 60 and probe.ks_ == (3, 5)
    assert_array_equal(probe.classes_, [0, 2, 5, 9])
    assert not hasattr(clone(probe), "index_")
    for copied in (pickle.loads(pickle.dumps(probe)), copy.deepcopy(probe)):
        for k, proba in probe.predict_proba_all(xb).items():
            assert_array_equal(copied.predict_proba_all(xb)[k], proba)


def test_duplicate_ks_are_answered_once() -> None:
    xb, yb = make_blobs(40, seed=7)
    probe = KNNProbe(k=(5, 1, 5), device="cpu").fit(xb, yb)
    assert list(probe.predict_all(xb)) == [5, 1]
    assert_array_equal(probe.predict_all(xb)[1], yb)  # each training row is its own nearest neighbour


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"k": 41}, r"k=41 exceeds the 40 training samples; pass k <= 40"),
        ({"k": [5, 50]}, r"k=50 exceeds the 40 training samples"),
        ({"k": 0}, r"k must hold integers >= 1; got 0"),
        ({"k": []}, r"k is an empty sequence"),
        ({"k": 2.5}, r"k must be an int or a sequence of ints; got 2.5"),
        ({"k": True}, r"k must be an int"),
        ({"vote": "majority"}, r"unknown vote 'majority'; use one of temperature, uniform, distance"),
        ({"temperature": 0}, r"temperature must be a finite number > 0; got 0"),
        ({"temperature": float("nan")}, r"temperature must be a finite number > 0"),
        ({"vote": "distance", "normalize": False}, r"vote='distance' .* needs normalize=True"),
        ({"device": "tpu"}, r"KNNProbe\(device='tpu'\) is not a device; use auto, cpu, cuda or cuda:N"),
    ],
)
def test_invalid_parameters_are_named(params: dict, match: str) -> None:
    xb, yb = make_blobs(40, seed=8)
    with pytest.raises(HeadError, match=match):
        KNNProbe(**{"device": "cpu", **params}).fit(xb, yb)


def test_invalid_inputs_are_named() -> None:
    xb, yb = make_blobs(40, seed=9)
    with pytest.raises(NotFittedError, match=r"not fitted yet; call fit"):
        KNNProbe().predict(xb)
    bad = xb.copy()
    bad[3, 1] = np.nan
    with pytest.raises(HeadError, match=r"NaN/inf in 1 row\(s\) \(first: \[3\]\)"):
        KNNProbe(device="cpu").fit(bad, yb)
    probe = KNNProbe(k=[1, 3], device="cpu").fit(xb, yb)
    with pytest.raises(HeadError, match=r"NaN/inf"):
        probe.predict_all(bad)
    with pytest.raises(HeadError, match=r"has 15 features but the head was fitted on 16"):
        probe.predict_all(xb[:, :15])
    with pytest.raises(HeadError, match=r"predict_proba needs a single k .* k=\[1, 3\]; use predict_proba_all"):
        probe.predict(xb)
    with pytest.raises(HeadError, match=r"k=41 exceeds the 40 training samples"):
        probe.search(xb, k=41)
    with pytest.raises(HeadError, match=r"has 39 labels for 40 feature rows"):
        KNNProbe(device="cpu").fit(xb, yb[:-1])


def test_faiss_padding_never_votes() -> None:
    xb, yb = make_blobs(40, seed=10)
    probe = KNNProbe(k=3, device="cpu").fit(xb, yb)

    class Padded:  # what FAISS returns when it finds fewer than k rows
        ntotal = 40

        def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            idx = np.zeros((len(xq), k), dtype=np.int64)
            idx[1, -1] = -1
            return np.zeros((len(xq), k), dtype=np.float32), idx

    probe.index_ = Padded()
    with pytest.raises(RuntimeError, match=r"fewer than k=3 neighbours for 1 query row\(s\) \(first: \[1\]\)"):
        probe.predict(xb)


def gpu_usable() -> bool:
    return hasattr(faiss, "StandardGpuResources") and torch.cuda.is_available()


@pytest.mark.skipif(gpu_usable(), reason="a GPU is usable here")
def test_cuda_without_gpu_raises_device_error() -> None:
    xb, yb = make_blobs(40, seed=11)
    with pytest.raises(DeviceError, match=r"KNNProbe\(device='cuda'\): .*; use KNNProbe\(device=cpu\)"):
        KNNProbe(device="cuda").fit(xb, yb)
    assert KNNProbe(device="auto").fit(xb, yb).device_ == "cpu"


def test_cuda_without_torch_cuda_names_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    xb, yb = make_blobs(40, seed=12)
    with pytest.raises(DeviceError, match=r"KNNProbe\(device='cuda'\): PyTorch sees no CUDA device"):
        KNNProbe(device="cuda").fit(xb, yb)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_usable(), reason="needs faiss-gpu and CUDA")
def test_gpu_index_matches_cpu() -> None:
    xb, yb = make_blobs(500, seed=13)
    xq, _ = make_blobs(100, seed=14)
    cpu = KNNProbe(k=[1, 10, 20], device="cpu").fit(xb, yb)
    gpu = KNNProbe(k=[1, 10, 20], device="cuda").fit(xb, yb)
    assert gpu.device_.startswith("cuda:")
    for k, proba in cpu.predict_proba_all(xq).items():
        assert_allclose(gpu.predict_proba_all(xq)[k], proba, atol=1e-5)
    restored = pickle.loads(pickle.dumps(gpu))
    assert_allclose(restored.predict_proba_all(xq)[20], cpu.predict_proba_all(xq)[20], atol=1e-5)
