"""Heads on every device string (auto, cpu, cuda, cuda:N): the one policy, a faked FAISS GPU build, TF32 switches."""

from __future__ import annotations

import pickle
from typing import Any

import faiss
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from probe.errors import DeviceError, HeadError
from probe.heads import KNNProbe, LinearProbe, MultiLabelKNNProbe
from probe.heads._logistic import _no_tf32, resolved_backend
from probe.heads.knn import GPU_MAX_K
from tests.test_runtime import fake_gpus


def blobs(n: int, *, dim: int = 8, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return (rng.normal(size=(n, dim)) + 2.0 * y[:, None]).astype(np.float32), y


class FakeGpuIndex:
    """What ``faiss.index_cpu_to_gpu`` returns, minus the GPU: remembers its device, refuses k > 2048."""

    def __init__(self, index: Any, device: int) -> None:
        self.cpu, self.device = index, device

    @property
    def ntotal(self) -> int:
        return int(self.cpu.ntotal)

    def add(self, x: np.ndarray) -> None:
        self.cpu.add(x)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k > GPU_MAX_K:
            raise RuntimeError(f"Error: 'k <= GPU_MAX_SELECTION_K' failed: k = {k}")
        out: tuple[np.ndarray, np.ndarray] = self.cpu.search(x, k)
        return out

    def reconstruct_n(self, i: int, n: int) -> np.ndarray:
        out: np.ndarray = self.cpu.reconstruct_n(i, n)
        return out


@pytest.fixture
def fake_faiss_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A FAISS GPU build with two GPUs, faked by attributes; ``state["fail"]`` makes index building fail."""
    state: dict[str, Any] = {"gpus": 2, "fail": False}

    def to_gpu(resources: Any, device: int, index: Any) -> FakeGpuIndex:
        if state["fail"]:
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device\nmore")
        return FakeGpuIndex(index, device)

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: state["gpus"], raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda index: index.cpu, raising=False)
    fake_gpus(monkeypatch, 2)
    return state


def test_knn_builds_on_the_requested_gpu(fake_faiss_gpu: dict[str, Any]) -> None:
    xb, yb = blobs(60)
    cpu = KNNProbe(k=[1, 5], device="cpu").fit(xb, yb)
    probe = KNNProbe(k=[1, 5], device="cuda:1").fit(xb, yb)
    assert probe.device_ == "cuda:1" and probe.index_.device == 1 and probe.fallback_reason_ is None
    assert KNNProbe(device="cuda").fit(xb, yb).index_.device == 0
    auto = KNNProbe(device="auto").fit(xb, yb)
    assert auto.device_ == "cuda:0" and auto.fallback_reason_ is None
    for k, proba in cpu.predict_proba_all(xb).items():
        assert_allclose(probe.predict_proba_all(xb)[k], proba)
    restored = pickle.loads(pickle.dumps(probe))
    assert restored.device_ == "cuda:1" and restored.index_.device == 1
    assert_allclose(restored.predict_proba_all(xb)[5], cpu.predict_proba_all(xb)[5])


def test_knn_auto_falls_back_with_a_reason(fake_faiss_gpu: dict[str, Any]) -> None:
    xb, yb = blobs(60)
    fake_faiss_gpu["fail"] = True  # a GPU build that cannot run here
    probe = KNNProbe(device="auto").fit(xb, yb)
    assert probe.device_ == "cpu"
    assert probe.fallback_reason_ == (
        "the FAISS GPU index failed (CUDA error: no kernel image is available for execution on the device)"
    )
    with pytest.raises(DeviceError, match=r"^KNNProbe\(device='cuda'\): FAISS cannot build a GPU index \(CUDA error"):
        KNNProbe(device="cuda").fit(xb, yb)
    fake_faiss_gpu["fail"], fake_faiss_gpu["gpus"] = False, 0  # GPU build, no GPU visible to FAISS
    probe = KNNProbe(device="auto").fit(xb, yb)
    assert (probe.device_, probe.fallback_reason_) == ("cpu", "FAISS sees no GPU")
    fake_faiss_gpu["gpus"] = 2
    with pytest.raises(
        DeviceError, match=r"^KNNProbe\(device='cuda:2'\): FAISS sees only 2 GPU\(s\); use KNNProbe\(device=cpu\)"
    ):
        KNNProbe(device="cuda:2").fit(xb, yb)


def test_knn_auto_above_the_gpu_k_limit_searches_on_the_cpu(fake_faiss_gpu: dict[str, Any]) -> None:
    xb, yb = blobs(GPU_MAX_K + 10)
    probe = KNNProbe(k=GPU_MAX_K + 1, device="auto").fit(xb, yb)
    assert probe.device_ == "cpu" and "exceeds FAISS's GPU limit" in str(probe.fallback_reason_)
    with pytest.raises(HeadError, match=rf"^KNNProbe\(k={GPU_MAX_K + 1}\) exceeds FAISS's GPU limit of {GPU_MAX_K}"):
        KNNProbe(k=GPU_MAX_K + 1, device="cuda").fit(xb, yb)


def test_multilabel_loo_search_respects_the_gpu_k_limit(fake_faiss_gpu: dict[str, Any]) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(GPU_MAX_K + 40, 4)).astype(np.float32)
    Y = (X[:, :2] > 0).astype(np.int64)
    gpu = MultiLabelKNNProbe(k=GPU_MAX_K, device="cuda").fit(X, Y)
    assert gpu.knn_.device_ == "cuda:0"
    cpu = MultiLabelKNNProbe(k=GPU_MAX_K, device="cpu").fit(X, Y)
    assert_allclose(gpu.loo_proba_all()[GPU_MAX_K], cpu.loo_proba_all()[GPU_MAX_K])  # k + 1 = 2049 on the CPU


def test_knn_without_a_gpu_build_names_the_extra() -> None:
    xb, yb = blobs(30)
    if not hasattr(faiss, "StandardGpuResources"):
        with pytest.raises(DeviceError, match=r"faiss-cpu is installed; install probe-embeddings\[gpu\]"):
            KNNProbe(device="cuda:0").fit(xb, yb)
    probe = KNNProbe(device="auto").fit(xb, yb)
    assert probe.device_ == "cpu" and probe.fallback_reason_ is not None
    assert KNNProbe(device="cpu").fit(xb, yb).fallback_reason_ is None
    with pytest.raises(HeadError, match=r"^KNNProbe\(device='tpu'\) is not a device; use auto, cpu, cuda or cuda:N"):
        KNNProbe(device="tpu").fit(xb, yb)


def test_linear_heads_take_cuda_n_and_record_where_they_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = blobs(60)
    probe = LinearProbe(C=1.0, device="cpu").fit(X, y)
    assert (probe.device_, probe.dtype_) == ("cpu", "float64")
    assert (LinearProbe(C=1.0).fit(X, y).device_, LinearProbe(C=1.0).fit(X, y).dtype_) == ("cpu", "float64")
    with pytest.raises(DeviceError, match=r"^LinearProbe\(device='cuda:1'\): CUDA is not available here"):
        LinearProbe(C=1.0, device="cuda:1").fit(X, y)
    with pytest.raises(HeadError, match=r"^LinearProbe\(device='gpu1'\) is not a device"):
        LinearProbe(C=1.0, device="gpu1").fit(X, y)
    fake_gpus(monkeypatch, 2)
    assert resolved_backend("cuda:1", "auto", owner="LinearProbe") == ("cuda:1", "float32")
    assert resolved_backend("auto", "float64", owner="LinearProbe") == ("cuda:0", "float64")
    with pytest.raises(DeviceError, match=r"^LinearProbe\(device='cuda:2'\): only 2 CUDA device\(s\)"):
        resolved_backend("cuda:2", "auto", owner="LinearProbe")


@pytest.fixture
def tf32_state() -> Any:
    """Restore PyTorch's TF32 switch (new API) to what it was, whatever a test set."""
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("this PyTorch has only the legacy TF32 switch")
    saved = matmul.fp32_precision
    yield matmul
    matmul.fp32_precision = saved


def test_linear_fit_under_the_new_tf32_switch(tf32_state: Any) -> None:
    """transformers' enable_tf32 sets the new switch; the legacy read in _no_tf32 used to raise "mix of ... APIs"."""
    tf32_state.fp32_precision = "tf32"
    X, y = blobs(60)
    LinearProbe(C=1.0, device="cpu").fit(X, y)
    assert tf32_state.fp32_precision == "tf32"
    with _no_tf32():
        assert tf32_state.fp32_precision == "ieee"
    assert tf32_state.fp32_precision == "tf32"


def test_linear_fit_under_the_legacy_tf32_switch(tf32_state: Any) -> None:
    tf32_state.allow_tf32 = True
    with _no_tf32():
        assert tf32_state.fp32_precision == "ieee"
    assert tf32_state.allow_tf32 is True
    tf32_state.fp32_precision = "none"  # PyTorch's default
    with _no_tf32():
        pass
    assert tf32_state.fp32_precision == "none"


def test_knn_predictions_equal_on_every_device_string(fake_faiss_gpu: dict[str, Any]) -> None:
    xb, yb = blobs(50, seed=3)
    ref = KNNProbe(k=7, device="cpu").fit(xb, yb).predict(xb)
    for device in ("auto", "cuda", "cuda:0", "cuda:1"):
        assert_array_equal(KNNProbe(k=7, device=device).fit(xb, yb).predict(xb), ref)


@pytest.mark.gpu
def test_cuda_float32_solver_matches_cpu_float64_accuracy() -> None:
    """The CUDA default (float32 products) against the CPU default (float64): accuracy within 0.5 points."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    rng = np.random.default_rng(5)
    centres = rng.normal(0, 1.0, size=(5, 64))
    y = np.arange(3000) % 5
    X = (centres[y] + rng.normal(size=(3000, 64))).astype(np.float32)  # overlapping classes: accuracy < 1
    train, test = np.arange(2000), np.arange(2000, 3000)
    cpu = LinearProbe(device="cpu").fit(X[train], y[train])
    gpu = LinearProbe(device="cuda").fit(X[train], y[train])
    assert (cpu.device_, cpu.dtype_) == ("cpu", "float64")
    assert gpu.device_.startswith("cuda:") and gpu.dtype_ == "float32"
    acc = {p.device_: float(np.mean(p.predict(X[test]) == y[test])) for p in (cpu, gpu)}
    assert abs(acc[cpu.device_] - acc[gpu.device_]) <= 0.005, acc
