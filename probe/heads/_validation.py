"""Input checks shared by every head: finite 2-D features, integer labels, fitted state."""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.errors import HeadError, NotFittedError


def check_features(X: Any, *, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Validate a feature matrix.

    Args:
        X: (n, d) array-like of real numbers.
        name: how the array is called in error messages.
        n_features: the width seen at ``fit`` (checked when given).

    Returns:
        (n, d) float32 C-contiguous array.

    Raises:
        HeadError: not 2-D, empty, wrong width, or holding NaN/inf (rows named).
    """
    arr = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if arr.ndim != 2:
        raise HeadError(f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}. Reshape it first.")
    if arr.shape[0] == 0:
        raise HeadError(f"{name} has no rows; pass at least one sample.")
    if n_features is not None and arr.shape[1] != n_features:
        raise HeadError(
            f"{name} has {arr.shape[1]} features but the head was fitted on {n_features}; "
            "use features from the same store and pooling."
        )
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise HeadError(
            f"{name} holds NaN/inf in {bad.size} row(s) (first: {bad[:5].tolist()}); drop rows whose store "
            "'valid' flag is False (extraction with ExtractConfig(on_error=skip)) or re-extract in fp32."
        )
    return arr


def check_labels(y: Any, *, n_samples: int, name: str = "y") -> np.ndarray:
    """Validate single-label class indices.

    Args:
        y: (n,) integer class labels.
        n_samples: rows of the matching feature matrix.
        name: how the array is called in error messages.

    Returns:
        (n,) int64 array.

    Raises:
        HeadError: wrong shape or length, or non-integer / negative values.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise HeadError(f"{name} must be 1-D class indices; got shape {arr.shape} (multi-label is not supported here).")
    if arr.shape[0] != n_samples:
        raise HeadError(f"{name} has {arr.shape[0]} labels for {n_samples} feature rows; pass one label per row.")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise HeadError(f"{name} must hold integer class indices; got dtype {arr.dtype}. Encode labels first.")
    if arr.size and arr.min() < 0:
        raise HeadError(f"{name} holds negative label {int(arr.min())}; class indices start at 0.")
    return arr.astype(np.int64, copy=False)


def check_fitted(estimator: Any, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``fit`` has set ``attribute``."""
    if not hasattr(estimator, attribute):
        name = type(estimator).__name__
        raise NotFittedError(f"this {name} is not fitted yet; call fit(X, y) before predicting.")


def labels_from_proba(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Arg-max labels with ties broken towards the smallest class label.

    Args:
        proba: (n, n_classes) scores, columns in the order of ``classes`` (sorted ascending).
        classes: (n_classes,) sorted class labels.

    Returns:
        (n,) labels.
    """
    # np.argmax returns the first maximum, i.e. the smallest label because classes are sorted.
    return classes[np.argmax(proba, axis=1)]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """(n, d) rows scaled to unit L2 norm in ``x``'s dtype; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1).astype(x.dtype))
