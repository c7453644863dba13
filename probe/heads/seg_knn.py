"""kNN segmentation probe: training-free label transfer from the most similar labelled patches (FAISS)."""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.errors import HeadError
from probe.heads._seg_targets import (
    BATCH_BYTES,
    SegHead,
    check_fitted,
    check_grid,
    check_masks,
    check_patch_features,
    infer_n_classes,
    patch_targets,
    positive,
)
from probe.heads._validation import l2_normalize
from probe.heads.knn import _build_index, _gpu_index, _gpu_unavailable_reason, _resolve_device

__all__ = ["SegKNNProbe"]

OWNER = "SegKNNProbe"


class SegKNNProbe(SegHead):
    """Label transfer: each query patch takes the weighted class fractions of its k nearest train patches.

    ``fit`` keeps the L2-normalised training patches that have at least one non-ignored pixel, with
    their class fractions (:func:`patch_targets`). A query patch is L2-normalised and searched
    exactly by inner product (cosine similarity; FAISS ``IndexFlatIP``); its class distribution is
    ``sum_j w_j * f_j`` over its k nearest patches, with ``w = softmax(sim / temperature)`` over
    those k (DINOv2's kNN weighting). These per-patch distributions are upsampled bilinearly to the
    mask resolution (``predict_proba``; they stay distributions) and ``predict`` takes the arg-max.

    Args:
        k: neighbours per query patch (>= 1); capped at the number of training patches.
        temperature: softness of the weights (> 0); smaller trusts the closest more.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, where the FAISS index lives
            (``"auto"``: a GPU when FAISS and PyTorch see one, else the CPU; see
            :class:`~probe.heads.knn.KNNProbe`).

    Attributes:
        bank_: (P, d) float32 L2-normalised training patches (those with a valid pixel).
        bank_targets_: (P, K) float32 their class fractions.
        classes_: (K',) int64 classes present in the training masks.
        n_classes_: K, the number of output channels.
        k_: the k used, min(k, P).
        n_features_in_: feature width d.
        grid_: (h, w) patch grid seen at ``fit``.
        mask_size_: (H, W) mask resolution seen at ``fit``; the default ``size`` of predictions.
        device_: ``"cpu"`` or ``"cuda:N"``, where the index lives.
        fallback_reason_: why ``device="auto"`` searches on the CPU (None otherwise).
    """

    _scores_are_logits = False  # the neighbours' class distributions are upsampled as they are

    def __init__(self, *, k: int = 20, temperature: float = 0.07, device: str = "auto") -> None:
        self.k = k
        self.temperature = temperature
        self.device = device

    def fit(self, X: Any, masks: Any, *, n_classes: int | None = None) -> SegKNNProbe:
        """Store the training patches and their class fractions, and index them.

        Args:
            X: (n, h, w, d) patch features, float16 or float32.
            masks: (n, H, W) integer class maps (255 = ignore), H >= h and W >= w.
            n_classes: K; None takes the largest label + 1 (at least 2).

        Returns:
            self.

        Raises:
            HeadError: invalid parameters or inputs, or masks that are ignored everywhere.
            DeviceError: ``device="cuda"`` without a usable FAISS GPU.
        """
        positive(self.k, owner=OWNER, name="k", hint="DINOv2 uses k=20", integer=True)
        positive(self.temperature, owner=OWNER, name="temperature", hint="DINOv2 uses 0.07")
        x = check_patch_features(X, owner=OWNER)
        k = infer_n_classes(masks, n_classes, owner=OWNER)
        m = check_masks(masks, n_classes=k, owner=OWNER, n_images=x.shape[0])
        grid = check_grid(x.shape[1:3], m.shape[1:], owner=OWNER)
        targets = patch_targets(m, grid=grid, n_classes=k).reshape(-1, k)
        keep = targets.sum(axis=1) > 0
        if not keep.any():
            raise HeadError(f"{OWNER}: every mask pixel is 255 (ignore); pass masks with labelled pixels.")
        self.k_ = min(int(self.k), int(keep.sum()))
        device, reason = _resolve_device(self.device, self.k_, owner=OWNER)
        self.bank_ = l2_normalize(x.reshape(-1, x.shape[3])[keep])
        self.bank_targets_ = np.ascontiguousarray(targets[keep])
        self._index, self._gpu_resources, self.device_, failed = _build_index(self.bank_, device, requested=self.device)
        self.fallback_reason_ = failed or reason
        self.classes_ = np.flatnonzero(self.bank_targets_.sum(axis=0) > 0).astype(np.int64)
        self.n_classes_ = k
        self.n_features_in_ = x.shape[3]
        self.grid_ = grid
        self.mask_size_ = (int(m.shape[1]), int(m.shape[2]))
        return self

    def _patch_scores(self, X: Any) -> np.ndarray:
        return self.predict_patch_proba(X)

    def predict_patch_proba(self, X: Any) -> np.ndarray:
        """Per-patch class distributions from the k nearest training patches.

        Args:
            X: (n, h, w, d) patch features (any grid).

        Returns:
            (n, h, w, K) float32 class distributions.
        """
        check_fitted(self, "bank_")
        x = check_patch_features(X, owner=OWNER, n_features=self.n_features_in_)
        n, h, w, d = x.shape
        index = self._search_index()
        k, K = self.k_, self.n_classes_
        out = np.empty((n * h * w, K), np.float32)
        step = max(1, BATCH_BYTES // (k * (4 * K + 24) + 4 * d))
        for s in range(0, n * h * w, step):
            xq = l2_normalize(x.reshape(-1, d)[s : s + step])
            sims, idx = index.search(xq, k)
            if (idx < 0).any():  # FAISS pads with -1 when it finds fewer than k rows
                raise RuntimeError(f"FAISS returned fewer than k={k} neighbours from {index.ntotal} rows; a bug.")
            # Shifting by the top similarity (column 0) leaves the softmax unchanged and never overflows.
            wts = np.exp((sims.astype(np.float64) - sims[:, :1]) / float(self.temperature))
            wts /= wts.sum(axis=1, keepdims=True)
            out[s : s + step] = np.einsum("qj,qjc->qc", wts, self.bank_targets_[idx])
        return out.reshape(n, h, w, K)

    def _search_index(self) -> Any:
        """The FAISS index over ``bank_``, rebuilt after unpickling (on the CPU when its GPU is gone)."""
        index = self.__dict__.get("_index")
        if index is None:
            device = self.device_
            if device != "cpu" and _gpu_unavailable_reason(_gpu_index(device)) is not None:
                device, self.fallback_reason_ = "cpu", f"unpickled where {device} is not usable by FAISS"
            self._index, self._gpu_resources, self.device_, _ = _build_index(self.bank_, device, requested="auto")
            index = self._index
        return index

    def __getstate__(self) -> dict[str, Any]:
        # FAISS indexes are SWIG objects; the bank is kept, so the index is rebuilt on first use.
        state = dict(super().__getstate__())
        state.pop("_index", None)
        state.pop("_gpu_resources", None)
        return state
