"""Bootstrap resampling shared by the classification and multi-label metrics.

Every metric is computed from per-sample resample counts: resample b of ``n`` rows is row b of
``default_rng(seed).integers(0, n, (B, n))``, drawn block by block so that no (B, n) array exceeds
``BLOCK_CELLS`` cells; the same rows feed every metric, so intervals are paired across metrics.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from probe.errors import MetricError

BLOCK_CELLS = 2**22  # resamples x samples per bootstrap block: bounds each (B, n) array to 16-32 MiB
# Count blocks are kept for the most recent draws that fit this many bytes, both caches together (a draw
# larger than that is computed and not kept): a curve scores every head and shot level of each seed on
# the same resamples, so drawing and counting them again is wasted work (10 seeds of BloodMNIST's 3421
# test rows at B = 1000: about 130 MiB).
CACHE_BYTES = 256 * 2**20
_LOCK = threading.Lock()
_Key = tuple[int, int, int, int]
_COUNTS: OrderedDict[_Key, tuple[np.ndarray, ...]] = OrderedDict()
_WEIGHTS: OrderedDict[_Key, tuple[np.ndarray, ...]] = OrderedDict()


def _size(v: Any) -> int:
    return int(v.nbytes) if isinstance(v, np.ndarray) else sum(_size(x) for x in v)


def _keep(cache: OrderedDict[_Key, Any], key: _Key, value: Any) -> None:
    """Put ``value`` last in ``cache`` and drop the oldest entries of both caches beyond :data:`CACHE_BYTES`."""
    if _size(value) > CACHE_BYTES:
        return
    with _LOCK:
        cache[key] = value
        other = _WEIGHTS if cache is _COUNTS else _COUNTS
        while sum(_size(v) for c in (_COUNTS, _WEIGHTS) for v in c.values()) > CACHE_BYTES:
            (cache if len(cache) > 1 else other).popitem(last=False)  # the new entry stays


def draw_resamples(seed: int, n: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Yield the rows of ``default_rng(seed).integers(0, n, (n_resamples, n))`` block by block (same rows)."""
    if int(n_resamples) < 1:
        raise MetricError(f"n_resamples must be at least 1; got {n_resamples}.")
    rng, block = np.random.default_rng(seed), max(1, BLOCK_CELLS // n)
    for start in range(0, int(n_resamples), block):
        yield rng.integers(0, n, size=(min(block, int(n_resamples) - start), n))


def resampled_counts(seed: int, n: int, n_resamples: int) -> tuple[np.ndarray, ...]:
    """The count blocks of :func:`draw_resamples` (``resample_counts`` of each block), read-only and cached.

    Recent distinct ``(seed, n, n_resamples)`` are kept (:data:`CACHE_BYTES`), so scoring many
    predictions of one test split with one seed draws and counts its resamples once.
    """
    return _cached(_COUNTS, seed, n, n_resamples, lambda counts: counts)


def resampled_weights(seed: int, n: int, n_resamples: int) -> tuple[np.ndarray, ...]:
    """The blocks of :func:`resampled_counts` in the form the classification metrics read, cached alike.

    Returns:
        Per block, :func:`weights_form` of its counts: (n, B) float32, sample-major.
    """
    return _cached(_WEIGHTS, seed, n, n_resamples, weights_form)


def _cached(cache: OrderedDict[_Key, Any], seed: int, n: int, n_resamples: int, form: Any) -> Any:
    """``form`` of each count block of (seed, n, n_resamples), read-only, from ``cache`` or made and kept."""
    key = (int(seed), int(n), int(n_resamples), BLOCK_CELLS)  # the block size shapes the blocks
    with _LOCK:
        blocks = cache.pop(key, None)
    if blocks is None:
        blocks = tuple(form(resample_counts(idx)) for idx in draw_resamples(seed, n, n_resamples))
        for array in blocks:
            array.flags.writeable = False
    _keep(cache, key, blocks)
    return blocks


def weights_form(counts: np.ndarray) -> np.ndarray:
    """(B, n) integer counts → (n, B) float32 weights, C-contiguous (one row per sample).

    float32 sums of counts are exact below 2**24 samples. Sample-major rows let the metrics' sparse
    products (confusion tallies, AUROC group sums) add one contiguous resample vector per sample.
    """
    return np.ascontiguousarray(counts.T, dtype=np.float32)


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
