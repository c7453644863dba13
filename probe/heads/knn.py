"""k-nearest-neighbour probe: exact cosine search on FAISS with uniform, distance or temperature votes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from probe.errors import ConfigError, DeviceError, HeadError
from probe.heads._validation import check_features, check_fitted, check_labels, l2_normalize, labels_from_proba
from probe.runtime import parse_device

VOTES = ("temperature", "uniform", "distance")
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
# Keeps the "distance" vote 1 / (1 - sim + eps) finite when a neighbour is an exact duplicate.
DISTANCE_EPS = 1e-6
# The largest k FAISS's GPU flat index returns; "auto" searches on the CPU above it.
GPU_MAX_K = 2048


class KNNProbe(ClassifierMixin, BaseEstimator):
    """Weighted k-nearest-neighbour classifier on frozen features.

    Rows are L2-normalised (``normalize=True``) and searched exactly by inner product, so the
    similarity ``sim`` of two rows is their cosine similarity. Each of the k nearest training rows
    casts a vote for its class:

    - ``"temperature"``: ``exp(sim / temperature)`` (the weighting of DINO/DINOv2's kNN evaluation);
      computed as ``exp((sim - max_sim) / temperature)`` with ``max_sim`` the query's top
      similarity, which leaves the normalised probabilities unchanged and never overflows;
    - ``"uniform"``: 1 (majority vote);
    - ``"distance"``: ``1 / (max(1 - sim, 0) + DISTANCE_EPS)``, the inverse cosine distance
      (needs ``normalize=True``).

    ``predict_proba`` is the vote mass of each class divided by the total; ``predict`` takes the
    arg-max, ties going to the smallest label. Several values of k are answered from one search
    at the largest k through :meth:`predict_proba_all` and :meth:`predict_all`.

    Rows of zero norm are left at zero (as scikit-learn's ``normalize`` and cosine metric do):
    their similarity to every row is 0.

    Args:
        k: neighbours per query; an int, or a sequence of ints for the ``*_all`` methods.
        vote: ``"temperature"``, ``"uniform"`` or ``"distance"``.
        temperature: softness of the ``"temperature"`` vote (> 0); smaller trusts the closest more.
        normalize: L2-normalise rows (cosine similarity) rather than use raw inner products.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (the FAISS index's GPU). ``"auto"``
            uses a GPU when FAISS is a GPU build that sees one (``faiss.get_num_gpus() > 0``),
            PyTorch (when loaded) sees CUDA, and the largest k is within FAISS's GPU limit; else,
            or when building the GPU index fails, it searches on the CPU and says why in
            ``fallback_reason_``.

    Attributes:
        classes_: (n_classes,) sorted class labels.
        ks_: the k values, deduplicated, in the order given.
        n_features_in_: feature width seen at ``fit``.
        n_samples_fit_: number of training rows.
        y_encoded_: (n_samples_fit_,) class index (into ``classes_``) of each training row.
        index_: the FAISS ``IndexFlatIP`` holding the (normalised) training rows.
        device_: ``"cpu"`` or ``"cuda:N"``, where ``index_`` lives.
        fallback_reason_: why ``device="auto"`` searches on the CPU (None when it uses a GPU or
            ``device="cpu"`` was asked for).
    """

    def __init__(
        self,
        *,
        k: int | Sequence[int] = 20,
        vote: str = "temperature",
        temperature: float = 0.07,
        normalize: bool = True,
        device: str = "auto",
    ) -> None:
        self.k = k
        self.vote = vote
        self.temperature = temperature
        self.normalize = normalize
        self.device = device

    def fit(self, X: Any, y: Any) -> KNNProbe:
        """Index the training rows.

        Args:
            X: (n_samples, n_features) training features.
            y: (n_samples,) integer class labels.

        Returns:
            self.

        Raises:
            HeadError: invalid parameters or inputs (k outside 1..n_samples, NaN rows, ...).
            DeviceError: ``device="cuda"`` without a usable GPU.
        """
        xb = check_features(X)
        labels = check_labels(y, n_samples=xb.shape[0])
        ks = _parse_k(self.k)
        self._check_params(ks, n_train=xb.shape[0])
        device, reason = _resolve_device(self.device, max(ks))
        if self.normalize:
            xb = l2_normalize(xb)
        self.classes_, self.y_encoded_ = np.unique(labels, return_inverse=True)
        self.index_, self._gpu_resources, self.device_, failed = _build_index(xb, device, requested=self.device)
        self.fallback_reason_ = failed or reason
        self.ks_ = ks
        self.n_features_in_ = xb.shape[1]
        self.n_samples_fit_ = xb.shape[0]
        return self

    def search(self, X: Any, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest training rows of each query, most similar first.

        Args:
            X: (n, n_features) query features.
            k: neighbours to return; defaults to the largest fitted k.

        Returns:
            sims: (n, k) float32 similarities (cosine when ``normalize``), descending per row.
            indices: (n, k) int64 training-row indices.
        """
        check_fitted(self, "index_")
        if k is None:
            k = max(self.ks_)
        elif len(ks := _parse_k(k)) != 1:
            raise HeadError(f"search takes one k; got k={list(ks)}. Call it once per k.")
        else:
            k = ks[0]
        self._check_k(k)
        xq = check_features(X, n_features=self.n_features_in_)
        if self.normalize:
            xq = l2_normalize(xq)
        sims, indices = self.index_.search(xq, k)
        missing = indices < 0
        if missing.any():  # FAISS pads with -1 when it finds fewer than k rows; -1 must never vote
            rows = np.flatnonzero(missing.any(axis=1))
            raise RuntimeError(
                f"FAISS returned fewer than k={k} neighbours for {rows.size} query row(s) (first: "
                f"{rows[:5].tolist()}) from an index of {self.index_.ntotal} rows; this is a bug, please report it."
            )
        return sims, indices

    def predict_proba_all(self, X: Any) -> dict[int, np.ndarray]:
        """Class probabilities for every fitted k, from one search at the largest k.

        Args:
            X: (n, n_features) query features.

        Returns:
            k -> (n, n_classes) float64 vote shares, columns in the order of ``classes_``.
        """
        sims, indices = self.search(X)
        weights = _vote_weights(sims, self.vote, self.temperature)
        codes = self.y_encoded_[indices]
        n_classes = self.classes_.size
        return {k: _tally(codes[:, :k], weights[:, :k], n_classes) for k in self.ks_}

    def predict_all(self, X: Any) -> dict[int, np.ndarray]:
        """Labels for every fitted k, from one search at the largest k.

        Args:
            X: (n, n_features) query features.

        Returns:
            k -> (n,) predicted labels (ties go to the smallest label).
        """
        return {k: labels_from_proba(p, self.classes_) for k, p in self.predict_proba_all(X).items()}

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities for the single fitted k.

        Args:
            X: (n, n_features) query features.

        Returns:
            (n, n_classes) float64 vote shares, columns in the order of ``classes_``.

        Raises:
            HeadError: the probe was fitted with several k (use :meth:`predict_proba_all`).
        """
        check_fitted(self, "index_")
        self._single_k("predict_proba")
        return next(iter(self.predict_proba_all(X).values()))

    def predict(self, X: Any) -> np.ndarray:
        """Labels for the single fitted k.

        Args:
            X: (n, n_features) query features.

        Returns:
            (n,) predicted labels (ties go to the smallest label).

        Raises:
            HeadError: the probe was fitted with several k (use :meth:`predict_all`).
        """
        return labels_from_proba(self.predict_proba(X), self.classes_)

    def _check_params(self, ks: tuple[int, ...], *, n_train: int) -> None:
        if self.vote not in VOTES:
            raise HeadError(f"unknown vote {self.vote!r}; use one of {', '.join(VOTES)}.")
        if not _is_positive_number(self.temperature):
            raise HeadError(f"temperature must be a finite number > 0; got {self.temperature!r} (DINOv2 uses 0.07).")
        if self.vote == "distance" and not self.normalize:
            raise HeadError("vote='distance' weighs by cosine distance 1 - sim, which needs normalize=True.")
        too_big = [k for k in ks if k > n_train]
        if too_big:
            raise HeadError(
                f"k={too_big[0]} exceeds the {n_train} training samples; pass k <= {n_train} or more training data."
            )

    def _check_k(self, k: int) -> None:
        if k > self.n_samples_fit_:
            raise HeadError(
                f"k={k} exceeds the {self.n_samples_fit_} training samples; pass k <= {self.n_samples_fit_}."
            )

    def _single_k(self, method: str) -> int:
        if len(self.ks_) != 1:
            raise HeadError(
                f"{method} needs a single k but this probe was fitted with k={list(self.ks_)}; "
                f"use {method}_all(X) for one result per k, or fit with an int k."
            )
        return self.ks_[0]

    def __getstate__(self) -> dict[str, Any]:
        # FAISS indexes are SWIG objects: pickle (and deepcopy) them as FAISS's own byte format.
        state = dict(super().__getstate__())
        state.pop("_gpu_resources", None)
        index = state.pop("index_", None)
        if index is not None:
            on_gpu = str(state.get("device_", "cpu")).startswith("cuda")
            cpu_index = faiss.index_gpu_to_cpu(index) if on_gpu else index
            state["index_"] = faiss.serialize_index(cpu_index)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        blob = state.pop("index_", None)
        super().__setstate__(state)
        if blob is not None:
            index = faiss.deserialize_index(blob)
            self._gpu_resources = None
            if self.device_.startswith("cuda"):
                reason = _gpu_unavailable_reason(_gpu_index(self.device_))
                if reason is None:
                    self._gpu_resources = faiss.StandardGpuResources()
                    index = faiss.index_cpu_to_gpu(self._gpu_resources, _gpu_index(self.device_), index)
                else:  # unpickled on a machine without that GPU: keep searching, on the CPU
                    self.device_, self.fallback_reason_ = "cpu", f"unpickled where {reason}"
            self.index_ = index


def _parse_k(k: Any) -> tuple[int, ...]:
    """Validate ``k`` (an int or a sequence of ints >= 1) and return the distinct values in order."""
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
        values = [k]
    elif isinstance(k, (Sequence, np.ndarray)) and not isinstance(k, str):
        values = list(k)
    else:
        raise HeadError(f"k must be an int or a sequence of ints; got {k!r}. Use e.g. k=20 or k=[10, 20].")
    if not values:
        raise HeadError("k is an empty sequence; pass at least one value, e.g. k=[10, 20].")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1]
    if bad:
        raise HeadError(f"k must hold integers >= 1; got {bad[0]!r}. Use e.g. k=20 or k=[10, 20].")
    return tuple(dict.fromkeys(int(v) for v in values))


def _is_positive_number(value: Any) -> bool:
    """True for a finite real number > 0 (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return bool(0 < value < np.inf)


def _gpu_unavailable_reason(index: int) -> str | None:
    """Why a FAISS GPU index cannot be built on GPU ``index`` here, or None when it can."""
    if not hasattr(faiss, "StandardGpuResources"):
        return "this FAISS build has no GPU support (faiss-cpu is installed; install probe-embeddings[gpu])"
    try:
        n_gpus = int(faiss.get_num_gpus())
    except Exception as exc:  # a GPU build on a machine whose driver cannot run it
        return f"FAISS cannot query its GPUs ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    if n_gpus < 1:
        return "FAISS sees no GPU"
    if index >= n_gpus:
        return f"FAISS sees only {n_gpus} GPU(s)"
    torch = sys.modules.get("torch")  # only consulted when loaded: importing torch costs seconds
    if torch is not None and not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    return None


def _gpu_index(device: str | None) -> int:
    """The GPU number of ``cuda``/``cuda:N``: N, or PyTorch's current device when torch is loaded, else 0."""
    _, index = parse_device(device or "cuda")
    if index is not None:
        return index
    torch = sys.modules.get("torch")
    return int(torch.cuda.current_device()) if torch is not None and torch.cuda.is_available() else 0


def _resolve_device(device: str, max_k: int, *, owner: str = "KNNProbe") -> tuple[str, str | None]:
    """Where the index is built: (``"cpu"`` or ``"cuda:N"``, why "auto" stayed on the CPU or None).

    Raises:
        HeadError: not a device string, an MPS device, or ``cuda`` with k above FAISS's GPU limit.
        DeviceError: ``cuda``/``cuda:N`` without a usable FAISS GPU.
    """
    try:
        kind, _ = parse_device(device, owner=owner)
    except ConfigError as exc:
        raise HeadError(str(exc)) from None
    if kind == "cpu":
        return "cpu", None
    if kind == "mps":
        raise HeadError(f"{owner}(device={device!r}): FAISS searches on the CPU or CUDA; use {owner}(device=cpu)")
    gpu = _gpu_index(None if kind == "auto" else device)
    reason = _gpu_unavailable_reason(gpu)
    if kind == "cuda":
        if reason is not None:
            raise DeviceError(f"{owner}(device={device!r}): {reason}; use {owner}(device=cpu) or {owner}(device=auto)")
        if max_k > GPU_MAX_K:
            raise HeadError(
                f"{owner}(k={max_k}) exceeds FAISS's GPU limit of {GPU_MAX_K}; use {owner}(device=cpu) or a smaller k"
            )
        return f"cuda:{gpu}", None
    if reason is None and max_k > GPU_MAX_K:
        reason = f"k={max_k} exceeds FAISS's GPU limit of {GPU_MAX_K}"
    return ("cpu", reason) if reason is not None else (f"cuda:{gpu}", None)


def _build_index(xb: np.ndarray, device: str, *, requested: str) -> tuple[Any, Any, str, str | None]:
    """Exact inner-product index over (n, d) float32 rows.

    Args:
        xb: (n, d) float32 rows.
        device: ``"cpu"`` or ``"cuda:N"``.
        requested: the device the user asked for; ``"auto"`` builds on the CPU when the GPU index fails,
            anything else raises.

    Returns:
        (index, GPU resources or None, the device it lives on, why it fell back to the CPU or None).
    """
    index: Any = faiss.IndexFlatIP(xb.shape[1])
    resources = None
    if device.startswith("cuda"):
        try:
            resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(resources, _gpu_index(device), index)
        except Exception as exc:  # FAISS raises plain RuntimeErrors for CUDA failures
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if parse_device(requested)[0] != "auto":
                raise DeviceError(
                    f"KNNProbe(device={requested!r}): FAISS cannot build a GPU index ({first}); "
                    "use KNNProbe(device=cpu)"
                ) from None
            index, resources = faiss.IndexFlatIP(xb.shape[1]), None
            index.add(xb)
            return index, None, "cpu", f"the FAISS GPU index failed ({first})"
    index.add(xb)
    return index, resources, device, None


def _vote_weights(sims: np.ndarray, vote: str, temperature: float) -> np.ndarray:
    """(n, k) float64 vote of each neighbour from its (n, k) similarity."""
    s = sims.astype(np.float64)
    if vote == "uniform":
        return np.ones_like(s)
    if vote == "distance":
        return 1.0 / (np.maximum(1.0 - s, 0.0) + DISTANCE_EPS)
    # Shifting by the row's top similarity scales a row's votes by one constant: same proba, no overflow.
    return np.exp((s - s.max(axis=1, keepdims=True)) / float(temperature))


def _tally(codes: np.ndarray, weights: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, n_classes) vote shares from (n, k) neighbour class indices and their (n, k) weights."""
    n = codes.shape[0]
    flat = (np.arange(n)[:, None] * n_classes + codes).ravel()
    mass = np.bincount(flat, weights=weights.ravel(), minlength=n * n_classes).reshape(n, n_classes)
    return mass / mass.sum(axis=1, keepdims=True)
