"""Shared pieces of the segmentation heads: patch targets, upsampling, pool statistics and input checks.

Arrays follow one convention: patch features ``X`` of shape (n, h, w, d), class maps ``masks`` of
shape (n, H, W) holding class indices 0..K-1 (0 = background) or :data:`IGNORE` (padding; never
trained on, never scored), and per-patch scores of shape (n, h, w, K).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator

from probe.errors import HeadError, NotFittedError

#: Mask value of pixels that are neither trained on nor scored (padding).
IGNORE = 255
#: Most classes a uint8 class map can hold next to :data:`IGNORE`.
MAX_CLASSES = 255
#: Rough size of one batch of images in the pooling / upsampling loops (bounds their working memory).
BATCH_BYTES = 64 * 2**20


def patch_targets(masks: Any, *, grid: tuple[int, int], n_classes: int) -> np.ndarray:
    """Class fractions of each patch cell's pixel block, among its non-ignored pixels.

    The one-hot maps and the validity map are area-pooled with
    ``torch.nn.functional.adaptive_avg_pool2d`` to ``grid`` and divided, so a grid that does not
    divide the mask size uses PyTorch's adaptive bins (cell i covers pixels
    ``floor(i * H / h)`` to ``ceil((i + 1) * H / h)``, neighbouring cells overlapping by a pixel).

    Args:
        masks: (n, H, W) integer class maps, values in [0, n_classes) or 255 (ignore).
        grid: (h, w) patch grid, h <= H and w <= W.
        n_classes: K >= 2.

    Returns:
        (n, h, w, K) float32 fractions, summing to 1 over K for cells with a valid pixel; all zeros
        for cells whose pixels are all ignored.

    Raises:
        HeadError: masks not 3-D, labels outside [0, K) other than 255, or a grid finer than the masks.
    """
    k = check_n_classes(n_classes, owner="patch_targets")
    m = check_masks(masks, n_classes=k, owner="patch_targets")
    h, w = check_grid(grid, m.shape[1:], owner="patch_targets")
    n, H, W = m.shape
    out = np.empty((n, h, w, k), np.float32)
    step = max(1, BATCH_BYTES // ((k + 1) * H * W * 4))
    for s in range(0, n, step):
        mb = torch.from_numpy(m[s : s + step].astype(np.int64))
        valid = mb != IGNORE
        onehot = F.one_hot(torch.where(valid, mb, 0), k).permute(0, 3, 1, 2).float() * valid[:, None]
        pooled = F.adaptive_avg_pool2d(torch.cat([onehot, valid[:, None].float()], dim=1), (h, w))
        share = pooled[:, k:]
        frac = torch.where(share > 0, pooled[:, :k] / share.clamp_min(1e-30), torch.zeros(()))
        out[s : s + step] = frac.permute(0, 2, 3, 1).numpy()
    return out


def upsample_logits(logits: Any, size: Any) -> np.ndarray:
    """Bilinear upsampling (``align_corners=False``) of per-patch scores to the mask resolution.

    Classes whose scores are -inf at every patch (classes a head never saw) stay -inf: they are left
    out of the interpolation, whose zero weights would otherwise turn them into NaN.

    Args:
        logits: (n, h, w, K) per-patch scores (logits, or probabilities).
        size: S or (H, W), the output resolution.

    Returns:
        (n, K, H, W) float32 scores.

    Raises:
        HeadError: logits not 4-D, or non-finite apart from all -inf classes.
    """
    z, live = _check_scores(logits)
    H, W = check_size(size, owner="upsample_logits")
    out = np.full((z.shape[0], z.shape[3], H, W), -np.inf, np.float32)
    for s, e, up in _upsampled(z, live, (H, W)):
        out[s:e, live] = up.numpy()
    return out


def softmax_maps(logits: Any, size: Any) -> np.ndarray:
    """Class probabilities at the mask resolution: softmax over K of the upsampled logits.

    Args:
        logits: (n, h, w, K) per-patch logits (-inf for classes never predicted).
        size: S or (H, W).

    Returns:
        (n, K, H, W) float32 probabilities (0 for -inf classes).
    """
    z, live = _check_scores(logits)
    H, W = check_size(size, owner="softmax_maps")
    out = np.zeros((z.shape[0], z.shape[3], H, W), np.float32)
    for s, e, up in _upsampled(z, live, (H, W)):
        out[s:e, live] = torch.softmax(up, dim=1).numpy()
    return out


def predict_maps(logits: Any, size: Any) -> np.ndarray:
    """Class maps: arg-max over K of the upsampled scores, processed in batches of images.

    Args:
        logits: (n, h, w, K) per-patch scores (logits or probabilities; -inf for classes never predicted).
        size: S or (H, W).

    Returns:
        (n, H, W) uint8 class indices; ties go to the smallest class.
    """
    z, live = _check_scores(logits)
    H, W = check_size(size, owner="predict_maps")
    codes = np.flatnonzero(live).astype(np.uint8)
    out = np.empty((z.shape[0], H, W), np.uint8)
    for s, e, up in _upsampled(z, live, (H, W)):
        out[s:e] = codes[up.argmax(dim=1).numpy()]  # argmax returns the first maximum
    return out


class SegHead(BaseEstimator):
    """What the segmentation heads share: class maps and probabilities at mask resolution from the
    per-patch scores of :meth:`_patch_scores` (logits, or probabilities when ``_scores_are_logits`` is
    False), upsampled bilinearly."""

    _scores_are_logits = True
    mask_size_: tuple[int, int]

    def _patch_scores(self, X: Any) -> np.ndarray:
        """(n, h, w, K) per-patch logits (or probabilities)."""
        raise NotImplementedError

    def predict_proba(self, X: Any, size: Any = None) -> np.ndarray:
        """Class probabilities at mask resolution.

        Args:
            X: (n, h, w, d) patch features.
            size: S or (H, W); None for ``mask_size_``.

        Returns:
            (n, K, H, W) float32 probabilities: the softmax of the upsampled logits, or the upsampled
            patch distributions.
        """
        scores, out = self._patch_scores(X), self.mask_size_ if size is None else size
        return softmax_maps(scores, out) if self._scores_are_logits else upsample_logits(scores, out)

    def predict(self, X: Any, size: Any = None) -> np.ndarray:
        """Class maps: arg-max of the upsampled scores (ties go to the smallest class).

        Args:
            X: (n, h, w, d) patch features.
            size: S or (H, W); None for ``mask_size_``.

        Returns:
            (n, H, W) uint8 class indices.
        """
        return predict_maps(self._patch_scores(X), self.mask_size_ if size is None else size)


def pool_statistics(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every feature over all patches of a pool, in one pass.

    Batches of images are reduced in float64 and merged with Chan et al.'s pairwise update, so a
    float16 store is read once and never converted whole.

    Args:
        X: (n, h, w, d) patch features (or any (..., d) array indexable along its first axis).

    Returns:
        mean: (d,) float64.
        std: (d,) float64 population standard deviation (ddof=0); constant features get 1, so
            ``(X - mean) / std`` is always finite (the solver's rule for zero-variance features).

    Raises:
        HeadError: X has no patches or holds NaN/inf.
    """
    n_images = len(X)
    d = int(X.shape[-1])
    per_image = max(1, int(np.prod(X.shape[1:])) * 8)
    step = max(1, BATCH_BYTES // per_image)
    count, mean, m2 = 0, np.zeros(d), np.zeros(d)
    for s in range(0, n_images, step):
        xb = np.asarray(X[s : s + step], dtype=np.float64).reshape(-1, d)
        if not np.isfinite(xb).all():
            raise HeadError(f"pool_statistics: X holds NaN/inf in images {s}..{s + len(xb) - 1}; re-extract in fp32.")
        nb = xb.shape[0]
        if nb == 0:
            continue
        mb = xb.mean(axis=0)
        delta = mb - mean
        total = count + nb
        m2 += ((xb - mb) ** 2).sum(axis=0) + delta**2 * count * nb / total
        mean += delta * nb / total
        count = total
    if count == 0:
        raise HeadError("pool_statistics: X has no patches; pass at least one image.")
    std = np.sqrt(m2 / count)
    tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)
    return mean, np.where(std <= tiny, 1.0, std)


def check_patch_features(X: Any, *, owner: str, n_features: int | None = None) -> np.ndarray:
    """Validate patch features and return them as (n, h, w, d) float32 C-contiguous.

    Raises:
        HeadError: not 4-D, no images, a width other than ``n_features``, or NaN/inf (images named).
    """
    arr = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if arr.ndim != 4:
        raise HeadError(
            f"{owner}: X has shape {arr.shape}; pass patch features of shape (n, h, w, d) (store pooling 'patch')."
        )
    if min(arr.shape) == 0:
        raise HeadError(f"{owner}: X has shape {arr.shape}; pass at least one image with a non-empty grid.")
    if n_features is not None and arr.shape[3] != n_features:
        raise HeadError(
            f"{owner}: X has {arr.shape[3]} features but the head was fitted on {n_features}; "
            "use features from the same store and backbone."
        )
    finite = np.isfinite(arr).all(axis=(1, 2, 3))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise HeadError(
            f"{owner}: X holds NaN/inf in {bad.size} image(s) (first: {bad[:5].tolist()}); drop images whose "
            "store 'valid' flag is False or re-extract in fp32."
        )
    return arr


def check_masks(masks: Any, *, n_classes: int, owner: str, n_images: int | None = None) -> np.ndarray:
    """Validate class maps: (n, H, W) integers in [0, n_classes) or 255.

    Raises:
        HeadError: wrong shape, a count other than ``n_images``, non-integer dtype, or a bad label.
    """
    m = np.asarray(masks)
    if m.ndim != 3 or min(m.shape) == 0:
        raise HeadError(f"{owner}: masks have shape {m.shape}; pass class maps of shape (n, H, W).")
    if n_images is not None and m.shape[0] != n_images:
        raise HeadError(f"{owner}: {m.shape[0]} masks for {n_images} feature images; pass one mask per image.")
    if m.dtype.kind not in "iu":
        raise HeadError(f"{owner}: masks have dtype {m.dtype}; pass integer class maps (uint8, 255 = ignore).")
    bad = (m != IGNORE) & ((m < 0) | (m >= n_classes))
    if bad.any():
        value = int(m[bad][0])
        raise HeadError(
            f"{owner}: masks hold label {value} but n_classes={n_classes}; pass n_classes={max(value + 1, 2)} "
            f"or mark those pixels {IGNORE} (ignore)."
            if 0 <= value < MAX_CLASSES
            else f"{owner}: masks hold label {value}; class indices must lie in [0, {n_classes}) or be {IGNORE}."
        )
    return m


def check_n_classes(n_classes: Any, *, owner: str) -> int:
    """Validate K (2..255) and return it as an int."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or not 2 <= n_classes <= MAX_CLASSES:
        raise HeadError(
            f"{owner}(n_classes={n_classes!r}) must be an int in [2, {MAX_CLASSES}]; count background as class 0."
        )
    return int(n_classes)


def infer_n_classes(masks: np.ndarray, n_classes: Any, *, owner: str) -> int:
    """``n_classes`` validated, or (None) the largest non-ignored label + 1, at least 2."""
    if n_classes is not None:
        return check_n_classes(n_classes, owner=owner)
    m = np.asarray(masks)
    labels = m[m != IGNORE] if m.dtype.kind in "iu" else np.zeros(0, np.int64)
    top = int(labels.max()) if labels.size else 0
    # A label beyond MAX_CLASSES is left for check_masks to name.
    return min(max(top + 1, 2), MAX_CLASSES)


def check_grid(grid: Any, mask_size: tuple[int, ...], *, owner: str) -> tuple[int, int]:
    """Validate a patch grid (h, w) against the mask size (H, W): 1 <= h <= H and 1 <= w <= W."""
    g = tuple(int(v) for v in grid)
    if len(g) != 2 or min(g) < 1:
        raise HeadError(f"{owner}: grid={grid!r} must be two ints >= 1, (h, w).")
    if g[0] > mask_size[0] or g[1] > mask_size[1]:
        raise HeadError(
            f"{owner}: the patch grid {g} is finer than the masks {tuple(mask_size)}; pass masks at least "
            "as large as the grid (the image resolution)."
        )
    return g[0], g[1]


def check_size(size: Any, *, owner: str) -> tuple[int, int]:
    """S or (H, W) as an (H, W) pair of positive ints."""
    pair = (size, size) if isinstance(size, int | np.integer) else tuple(size)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in pair):
        raise HeadError(f"{owner}(size={size!r}) must be an int >= 1 or a pair (H, W) of them.")
    return int(pair[0]), int(pair[1])


def check_fitted(estimator: Any, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``fit`` has set ``attribute``."""
    if not hasattr(estimator, attribute):
        name = type(estimator).__name__
        raise NotFittedError(f"this {name} is not fitted yet; call fit(X, masks) before predicting.")


def positive(value: Any, *, owner: str, name: str, hint: str, integer: bool = False, zero: bool = False) -> None:
    """Raise ``Owner(name=value) must be ...`` unless value is a finite number > 0 (>= 0 with ``zero``)."""
    if isinstance(value, bool):
        ok = False
    elif integer:
        ok = isinstance(value, int | np.integer)
    else:
        ok = isinstance(value, int | float | np.integer | np.floating) and bool(np.isfinite(value))
    if not ok or value < 0 or (value == 0 and not zero):
        what = "an int" if integer else "a finite number"
        raise HeadError(f"{owner}({name}={value!r}) must be {what} {'>= 0' if zero else '> 0'}; {hint}.")


def _check_scores(logits: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n, h, w, K) float32 scores and the (K,) mask of classes not -inf everywhere."""
    z = np.asarray(logits, dtype=np.float32)
    if z.ndim != 4:
        raise HeadError(f"scores have shape {z.shape}; pass per-patch scores of shape (n, h, w, K).")
    live = np.asarray(~np.isneginf(z).all(axis=(0, 1, 2)))
    if not live.any() or not np.isfinite(z[..., live]).all():
        raise HeadError("scores hold NaN/inf; only classes that are -inf at every patch may be non-finite.")
    return z, live


def _upsampled(z: np.ndarray, live: np.ndarray, size: tuple[int, int]) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Batches (start, end, (b, K_live, H, W) float32 tensor) of the live classes' upsampled scores."""
    n, k_live = z.shape[0], int(live.sum())
    step = max(1, BATCH_BYTES // (k_live * size[0] * size[1] * 4 * 2))
    zl = z[..., live] if not live.all() else z
    for s in range(0, n, step):
        t = torch.from_numpy(np.ascontiguousarray(zl[s : s + step])).permute(0, 3, 1, 2)
        yield s, min(s + step, n), F.interpolate(t, size=size, mode="bilinear", align_corners=False)
