"""Bootstrap resampling shared by the classification and multi-label metrics.

Every metric is computed from per-sample resample counts: resample b of ``n`` rows is row b of
``default_rng(seed).integers(0, n, (B, n))``, drawn block by block so that no (B, n) array exceeds
``BLOCK_CELLS`` cells; the same rows feed every metric, so intervals are paired across metrics.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from probe.errors import MetricError

BLOCK_CELLS = 2**22  # resamples x samples per bootstrap block: bounds each (B, n) array to 16-32 MiB
# Count blocks of this many (seed, n, B) draws are kept: a curve scores every head and shot level of
# one seed on the same resamples, so drawing and counting them again is wasted work.
CACHED_DRAWS = 2
_COUNTS: OrderedDict[tuple[int, int, int], tuple[np.ndarray, ...]] = OrderedDict()


def draw_resamples(seed: int, n: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Yield the rows of ``default_rng(seed).integers(0, n, (n_resamples, n))`` block by block (same rows)."""
    if int(n_resamples) < 1:
        raise MetricError(f"n_resamples must be at least 1; got {n_resamples}.")
    rng, block = np.random.default_rng(seed), max(1, BLOCK_CELLS // n)
    for start in range(0, int(n_resamples), block):
        yield rng.integers(0, n, size=(min(block, int(n_resamples) - start), n))


def resampled_counts(seed: int, n: int, n_resamples: int) -> tuple[np.ndarray, ...]:
    """The count blocks of :func:`draw_resamples` (``resample_counts`` of each block), read-only and cached.

    The last :data:`CACHED_DRAWS` distinct ``(seed, n, n_resamples)`` are kept, so scoring many
    predictions of one test split with one seed draws and counts its resamples once.
    """
    key = (int(seed), int(n), int(n_resamples))
    blocks = _COUNTS.pop(key, None)
    if blocks is None:
        blocks = tuple(resample_counts(idx) for idx in draw_resamples(seed, n, n_resamples))
        for b in blocks:
            b.flags.writeable = False
    _COUNTS[key] = blocks
    while len(_COUNTS) > CACHED_DRAWS:
        _COUNTS.popitem(last=False)
    return blocks


def resample_counts(idx: np.ndarray) -> np.ndarray:
    """(B, n) resampled row indices → (B, n) int32 counts: how often resample b drew row i."""
    b, n = idx.shape
    flat = (idx.astype(np.int64) + (np.arange(b, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.int32)


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise MetricError(f"confidence must lie in (0, 1); got {confidence}. Use e.g. 0.95.")


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    v = values[~np.isnan(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    alpha = 100 * (1 - confidence) / 2
    low, high = np.percentile(v, [alpha, 100 - alpha])
    return float(low), float(high)
