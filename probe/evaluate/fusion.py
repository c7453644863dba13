"""Views → one vector per sample, at load time: slice aggregation, modality fusion, masks (numpy only).

Multi-view stores keep per-view features, shape (n, n_views, dim), and a presence mask (n, n_views):
the slices of a volume, or the modalities of a study. Nothing here is fingerprinted, because
nothing here changes the store: a different fusion is a new probe of the same features.

Fusions:

- ``mean``: mean of the present views (dim); the DINOv2-radiology volume protocol's default.
- ``max``: element-wise max of the present views (dim).
- ``meanmax``: ``mean`` ‖ ``max`` (2 dim).
- ``concat``: every view in a fixed order, absent ones as zeros, then one 0/1 presence indicator per
  view (n_views * dim + n_views): the head can tell "missing" from "all-zero features".

A sample without any present view (possible after an ablation) fuses to zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.errors import ProtocolError

FUSIONS: tuple[str, ...] = ("mean", "max", "meanmax", "concat")


@dataclass(frozen=True)
class ViewConfig:
    """How multi-view samples (volume slices, modalities) are probed; ignored for single-image stores."""

    fusion: str | None = None  # mean, max, meanmax or concat; None: mean for slices, concat for modalities
    modality_dropout: float = 0.0  # > 0: the linear head also trains on copies with modalities dropped
    dropout_copies: int = 1  # masked copies of every training row added when modality_dropout > 0
    ablate: bool = True  # modality stores: also score the test split with each modality removed

    def __post_init__(self) -> None:
        if self.fusion is not None and self.fusion not in FUSIONS:
            raise ProtocolError(f"ViewConfig(fusion={self.fusion!r}) is unknown; use one of {', '.join(FUSIONS)}")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ProtocolError(
                f"ViewConfig(modality_dropout={self.modality_dropout}): use a probability in [0, 1), e.g. 0.3"
            )
        if self.dropout_copies < 1:
            raise ProtocolError(f"dropout_copies {self.dropout_copies} must be at least 1")


def default_fusion(view_kind: str) -> str:
    """``concat`` for modalities (each keeps its own weights), ``mean`` for slices."""
    return "concat" if view_kind == "modalities" else "mean"


def fused_width(method: str, n_views: int, dim: int) -> int:
    """Width of the fused vector."""
    return {"mean": dim, "max": dim, "meanmax": 2 * dim, "concat": n_views * (dim + 1)}[method]


def fuse_views(features: np.ndarray, present: np.ndarray, method: str) -> np.ndarray:
    """One vector per sample from its present views.

    Args:
        features: (n, n_views, dim) per-view features (values of absent views are ignored, NaN allowed).
        present: (n, n_views) bool, which views exist.
        method: one of :data:`FUSIONS`.

    Returns:
        (n, width) float32, width from :func:`fused_width`.

    Raises:
        ProtocolError: unknown method.
    """
    if method not in FUSIONS:
        raise ProtocolError(f"fusion {method!r} is unknown; use one of {', '.join(FUSIONS)}")
    n, v, d = features.shape
    mask = np.asarray(present, dtype=bool)
    f = np.where(mask[:, :, None], features, 0.0).astype(np.float32)
    if method == "concat":
        return np.concatenate([f.reshape(n, v * d), mask.astype(np.float32)], axis=1)
    count = mask.sum(axis=1, keepdims=True)
    mean = f.sum(axis=1) / np.maximum(count, 1)
    if method == "mean":
        return mean.astype(np.float32)
    mx = np.where(mask[:, :, None], features, -np.inf).max(axis=1)
    mx = np.where(count > 0, mx, 0.0).astype(np.float32)
    return mx if method == "max" else np.concatenate([mean, mx], axis=1).astype(np.float32)


def without_views(present: np.ndarray, views: list[int]) -> np.ndarray:
    """A copy of ``present`` (n, n_views) with the given view columns removed (set False)."""
    out = np.array(present, dtype=bool, copy=True)
    out[:, views] = False
    return out


def dropout_masks(present: np.ndarray, *, p: float, copies: int, seed: int) -> np.ndarray:
    """Random full-view masks: each present view is dropped with probability ``p``, at least one kept.

    When every present view of a row would be dropped, one of them (uniformly) is kept instead.

    Args:
        present: (n, n_views) bool.
        p: drop probability per view.
        copies: masks per row.
        seed: seed of the generator.

    Returns:
        (copies, n, n_views) bool, each a subset of ``present`` with at least one view per row that has one.
    """
    rng = np.random.default_rng([seed, 0x6D64])
    mask = np.asarray(present, dtype=bool)
    keep = (rng.random((copies, *mask.shape)) >= p) & mask[None]
    has_view = np.asarray(mask.any(axis=1))
    kept_any = np.asarray(keep.any(axis=2))
    empty = ~kept_any & has_view[None]
    score = np.where(mask[None], rng.random((copies, *mask.shape)), -1.0)
    rescue = score.argmax(axis=2)  # a random present view of each row
    c_idx, r_idx = np.nonzero(empty)
    keep[c_idx, r_idx, rescue[c_idx, r_idx]] = True
    return keep
