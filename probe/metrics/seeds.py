"""Statistics across seeds or episodes: the mean with a Student-t interval, and paired comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from probe.errors import MetricError
from probe.metrics._bootstrap import check_confidence, draw_resamples, percentile_interval

#: Fewer seeds than this give Student-t intervals too wide (t(0.975, 1) = 12.7) to read unflagged.
MIN_SEEDS = 5


def mean_ci(
    values: Any, *, confidence: float = 0.95, bounds: tuple[float, float] | None = None
) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval across seeds or episodes.

    Args:
        values: (m,) float values; NaNs are ignored.
        confidence: central coverage of the interval, in (0, 1).
        bounds: (low, high) range of the metric (:func:`probe.metrics.metric_range`); the interval is
            clipped to it (a Student-t interval of 2-3 seeds easily leaves [0, 1]).

    Returns:
        (mean, low, high); (v, nan, nan) with one value and (nan, nan, nan) with none.
    """
    check_confidence(confidence)
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    mean = float(v.mean())
    if v.size == 1:
        return mean, float("nan"), float("nan")
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    if bounds is None:
        return mean, mean - half, mean + half
    return mean, max(mean - half, bounds[0]), min(mean + half, bounds[1])


@dataclass(frozen=True)
class PairedComparison:
    """System a minus system b, evaluated on the same seeds or points."""

    mean_diff: float  # mean of a - b over the pairs
    ci_low: float  # lower percentile-bootstrap bound of the mean difference (nan with < 2 pairs)
    ci_high: float  # upper bound, likewise
    wilcoxon_p: float  # two-sided Wilcoxon signed-rank p-value (nan with < 2 pairs or all differences 0)
    n_pairs: int  # pairs used: those where both a and b are not NaN


def paired_comparison(
    a: Any, b: Any, *, n_resamples: int = 10000, seed: int = 0, confidence: float = 0.95
) -> PairedComparison:
    """Compare two systems pair by pair: bootstrap CI of the mean difference and a Wilcoxon test.

    Args:
        a: (m,) float scores of system a.
        b: (m,) float scores of system b on the same seeds or points, in the same order.
        n_resamples: bootstrap resamples of the pairs.
        seed: seed of the resampling generator.
        confidence: central coverage of the interval, in (0, 1).

    Returns:
        A :class:`PairedComparison`; pairs where a or b is NaN are dropped.

    Raises:
        MetricError: a and b differ in length or share no non-NaN pair, or bad arguments.
    """
    check_confidence(confidence)
    a_arr, b_arr = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a_arr.shape != b_arr.shape:
        raise MetricError(f"a has {a_arr.size} values and b has {b_arr.size}; pass one value per seed for both.")
    d = (a_arr - b_arr)[~(np.isnan(a_arr) | np.isnan(b_arr))]
    if d.size == 0:
        raise MetricError("a and b share no pair without NaN; evaluate both systems on the same seeds.")
    nan = float("nan")
    if d.size < 2:
        return PairedComparison(float(d.mean()), nan, nan, nan, 1)
    means = np.concatenate([d[idx].mean(axis=1) for idx in draw_resamples(seed, d.size, n_resamples)])
    low, high = percentile_interval(means, confidence)
    p = nan if not np.any(d) else float(scipy.stats.wilcoxon(d).pvalue)
    return PairedComparison(float(d.mean()), low, high, p, int(d.size))
