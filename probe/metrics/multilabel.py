"""Multi-label metrics: per-label and macro AUROC, average precision and F1 at tuned thresholds.

Targets are (n, C) int: 1 positive, 0 negative, -1 ignored (an entry masked by the uncertain
policy, which counts for no metric of its label). Scores are (n, C) per-label probabilities. As in
:mod:`probe.metrics.classification`, every metric is computed from per-sample resample counts: the point estimate
uses counts of one, and bootstrap resample b the counts of row b of
``default_rng(seed).integers(0, n, (B, n))`` (the rows :func:`probe.metrics.classification.bootstrap_ci` draws).

- ``auroc[<label>]``: Mann–Whitney AUROC on the label's known rows (ties count one half); NaN when
  they lack positives or negatives.
- ``ap[<label>]``: average precision as scikit-learn defines it, the sum over distinct score
  thresholds of (gain in recall) × precision; NaN without positives.
- ``f1[<label>]``: ``2 TP / (2 TP + FP + FN)`` predicting positive where ``score >= threshold``;
  NaN when the label has no positive and none is predicted.
- ``macro_auroc``, ``macro_ap``, ``macro_f1``: means over the labels where the value is defined.

F1 needs one threshold per label, tuned by :func:`tune_thresholds` on data the caller chooses and
never on the evaluated split (the protocols use the validation split for full-data runs and the
labelled training draw otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.errors import MetricError
from probe.metrics._bootstrap import check_confidence, percentile_interval, resample_counts, resampled_counts

METRIC_LABELS = {
    "macro_auroc": "macro AUROC (mean over labels)",
    "macro_ap": "macro average precision (mAP)",
    "macro_f1": "macro F1 at tuned thresholds",
    "per_label": "AUROC, AP and F1 of every label",
}
#: What a plan scores on a multi-label set unless told otherwise.
DEFAULT_METRICS: tuple[str, ...] = ("macro_auroc", "macro_ap", "macro_f1", "per_label")
PER_LABEL = ("auroc", "ap", "f1")
_PER_LABEL = re.compile(r"(auroc|ap|f1)\[(.+)\]")
_PER_LABEL_TEXT = {"auroc": "AUROC of {}", "ap": "average precision of {}", "f1": "F1 of {} (tuned threshold)"}
#: Threshold of a label whose tuning rows hold no positive (or no known entry).
DEFAULT_THRESHOLD = 0.5


def is_metric_name(name: str) -> bool:
    """Whether ``name`` is a multi-label metric (label names are checked later, against the data)."""
    return name in METRIC_LABELS or _PER_LABEL.fullmatch(name) is not None


def metric_label(name: str) -> str:
    """Human label of a multi-label metric name, e.g. ``"AUROC of Cardiomegaly"``.

    Raises:
        MetricError: not a multi-label metric name.
    """
    match = _PER_LABEL.fullmatch(name)
    if match:
        return _PER_LABEL_TEXT[match.group(1)].format(match.group(2))
    if name not in METRIC_LABELS:
        raise _unknown(name)
    return METRIC_LABELS[name]


def resolve_metrics(metrics: str | Sequence[str], *, labels: Sequence[str]) -> tuple[str, ...]:
    """Validate names and expand ``per_label`` to ``auroc[<l>]``, ``ap[<l>]``, ``f1[<l>]`` for every label.

    Raises:
        MetricError: an unknown name or label, or no name.
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise MetricError(f"no metric requested; pass at least one of {', '.join(METRIC_LABELS)}.")
    out: list[str] = []
    for name in names:
        match = _PER_LABEL.fullmatch(name)
        if name == "per_label":
            out.extend(f"{kind}[{label}]" for kind in PER_LABEL for label in labels)
        elif match:
            if match.group(2) not in labels:
                raise MetricError(f"metric {name!r} names no label of this set; labels are {', '.join(labels)}.")
            out.append(name)
        elif name in METRIC_LABELS:
            out.append(name)
        else:
            raise _unknown(name)
    return tuple(dict.fromkeys(out))


def check_targets(y_true: Any, proba: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate multi-label targets and scores.

    Args:
        y_true: (n, C) int, 1 / 0 / -1 (ignored).
        proba: (n, C) finite scores.

    Returns:
        (n, C) int64 targets and (n, C) float64 scores.

    Raises:
        MetricError: shapes differ, values outside {-1, 0, 1}, or non-finite scores.
    """
    y, p = np.asarray(y_true), np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or y.shape != p.shape:
        raise MetricError(f"multi-label y_true {y.shape} and proba {p.shape} must both be (n, C) with n >= 1.")
    if y.dtype.kind not in "iu" or not np.isin(y, (-1, 0, 1)).all():
        raise MetricError("multi-label y_true must hold 1 (positive), 0 (negative) or -1 (ignored).")
    if not np.isfinite(p).all():
        raise MetricError("proba holds NaN/inf; fix the head.")
    return y.astype(np.int64), p


@dataclass(frozen=True)
class _Label:
    """One label's known rows sorted by descending score, with their tie groups."""

    order: np.ndarray  # (m,) row indices of the known rows, by descending score
    positive: np.ndarray  # (m,) bool, in that order
    ends: np.ndarray  # (g,) one past the last place of each tie group, ascending
    n_pred: int  # places predicted positive at the label's threshold (score >= threshold)


def _sort_label(y: np.ndarray, score: np.ndarray, threshold: float) -> _Label:
    known = np.flatnonzero(y >= 0)
    order = known[np.argsort(-score[known], kind="stable")]
    s = score[order]
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]) + 1, s.size).astype(np.int64) if s.size else np.zeros(0, int)
    return _Label(order, y[order] == 1, ends, int(np.count_nonzero(s >= threshold)))


def tune_thresholds(y_true: Any, proba: Any) -> np.ndarray:
    """Per label, the score threshold that maximises F1 on the given (tuning) rows.

    The best cut predicts positive the rows of score >= s*; the threshold is the midpoint between s*
    and the next lower score (s* itself when none is lower). Among equal F1 the higher cut wins.
    A label without a known positive keeps :data:`DEFAULT_THRESHOLD`.

    Args:
        y_true: (n, C) int targets, 1 / 0 / -1 (ignored).
        proba: (n, C) scores.

    Returns:
        (C,) float64 thresholds.
    """
    y, p = check_targets(y_true, proba)
    out = np.full(y.shape[1], DEFAULT_THRESHOLD)
    for j in range(y.shape[1]):
        lab = _sort_label(y[:, j], p[:, j], DEFAULT_THRESHOLD)
        n_pos = int(lab.positive.sum())
        if n_pos == 0:
            continue
        tp = np.cumsum(lab.positive)[lab.ends - 1]
        f1 = 2 * tp / (lab.ends + n_pos)  # predicted = group end, so 2TP / (TP + FP + P)
        g = int(np.argmax(f1))
        scores = p[lab.order, j]
        cut = scores[lab.ends[g] - 1]
        out[j] = cut if g == lab.ends.size - 1 else (cut + scores[lab.ends[g]]) / 2
    return out


@dataclass(frozen=True)
class _Data:
    n: int  # rows
    labels: tuple[str, ...]  # C label names
    plans: tuple[_Label, ...]  # one per label


def _prepare(
    y_true: Any, proba: Any, *, metrics: str | Sequence[str], labels: Sequence[str], thresholds: Any
) -> tuple[_Data, tuple[str, ...]]:
    y, p = check_targets(y_true, proba)
    names_of = tuple(str(v) for v in labels)
    if len(names_of) != y.shape[1]:
        raise MetricError(f"{len(names_of)} label names for {y.shape[1]} label columns; pass one name per column.")
    names = resolve_metrics(metrics, labels=names_of)
    needs_f1 = any(n == "macro_f1" or n.startswith("f1[") for n in names)
    if thresholds is None:
        if needs_f1:
            raise MetricError(
                "F1 needs per-label thresholds tuned off the test set: pass thresholds=tune_thresholds(...)"
            )
        t = np.full(y.shape[1], DEFAULT_THRESHOLD)
    else:
        t = np.asarray(thresholds, dtype=np.float64)
        if t.shape != (y.shape[1],) or np.isnan(t).any():
            raise MetricError(f"thresholds must be ({y.shape[1]},) numbers, one per label; got shape {t.shape}.")
    plans = tuple(_sort_label(y[:, j], p[:, j], float(t[j])) for j in range(y.shape[1]))
    return _Data(y.shape[0], names_of, plans), names


def _label_values(plan: _Label, counts: np.ndarray) -> dict[str, np.ndarray]:
    """(B,) AUROC, AP and F1 of one label under (B, n) resample counts."""
    w = np.take(counts, plan.order, axis=1).astype(np.float64)
    wp = np.where(plan.positive, w, 0.0)
    cp, cn = np.cumsum(wp, axis=1), np.cumsum(w - wp, axis=1)
    b = counts.shape[0]
    if plan.ends.size == 0:
        nan = np.full(b, np.nan)
        return {"auroc": nan, "ap": nan, "f1": nan}
    CP, CN = cp[:, plan.ends - 1], cn[:, plan.ends - 1]  # cumulative at each tie group's end
    P, N = CP[:, -1], CN[:, -1]
    gp = np.diff(CP, axis=1, prepend=0.0)  # positives in each tie group
    gn = np.diff(CN, axis=1, prepend=0.0)
    auc_num = (gp * (N[:, None] - CN + 0.5 * gn)).sum(axis=1)
    precision = np.divide(CP, CP + CN, out=np.zeros_like(CP), where=(CP + CN) > 0)
    tp = cp[:, plan.n_pred - 1] if plan.n_pred else np.zeros(b)
    fp = cn[:, plan.n_pred - 1] if plan.n_pred else np.zeros(b)
    return {
        "auroc": _div(auc_num, P * N),
        "ap": _div((gp * precision).sum(axis=1), P),
        "f1": _div(2 * tp, tp + fp + P),
    }


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _evaluate(data: _Data, names: Sequence[str], counts: np.ndarray) -> dict[str, np.ndarray]:
    per = [_label_values(plan, counts) for plan in data.plans]
    out: dict[str, np.ndarray] = {}
    for name in names:
        match = _PER_LABEL.fullmatch(name)
        if match:
            out[name] = per[data.labels.index(match.group(2))][match.group(1)]
            continue
        stack = np.stack([v[name.removeprefix("macro_")] for v in per], axis=1)  # (B, C)
        defined = ~np.isnan(stack)
        out[name] = _div(np.where(defined, stack, 0.0).sum(axis=1), defined.sum(axis=1).astype(np.float64))
    return out


def compute_multilabel_metrics(
    y_true: Any, proba: Any, *, metrics: str | Sequence[str], labels: Sequence[str], thresholds: Any = None
) -> dict[str, float]:
    """Metrics of one set of multi-label predictions.

    Args:
        y_true: (n, C) int targets, 1 / 0 / -1 (ignored).
        proba: (n, C) per-label scores.
        metrics: names (see the module docstring), ``per_label`` expanding to every label.
        labels: the C label names used in per-label metric names.
        thresholds: (C,) F1 thresholds from :func:`tune_thresholds` (required for F1).

    Returns:
        Metric name → value (NaN where undefined).

    Raises:
        MetricError: invalid inputs or names, F1 without thresholds, or ``macro_auroc`` when no label
            has both positives and negatives.
    """
    data, names = _prepare(y_true, proba, metrics=metrics, labels=labels, thresholds=thresholds)
    values = _evaluate(data, names, np.ones((1, data.n), dtype=np.int32))
    if "macro_auroc" in values and np.isnan(values["macro_auroc"][0]):
        raise MetricError(
            "macro_auroc needs a label with both positives and negatives among the evaluated rows; "
            "evaluate on a larger split or drop this metric."
        )
    return {name: float(values[name][0]) for name in names}


def bootstrap_distribution_multilabel(
    y_true: Any,
    proba: Any,
    *,
    metrics: str | Sequence[str],
    labels: Sequence[str],
    resamples: Any,
    thresholds: Any = None,
) -> dict[str, np.ndarray]:
    """Metric values on explicit resamples: ``resamples`` (B, n) row indices; returns name → (B,) values."""
    data, names = _prepare(y_true, proba, metrics=metrics, labels=labels, thresholds=thresholds)
    idx = np.asarray(resamples)
    if idx.ndim != 2 or idx.shape[1] != data.n or idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= data.n:
        raise MetricError(f"resamples must be (B, {data.n}) integer row indices in [0, {data.n}).")
    return _evaluate(data, names, resample_counts(idx))


def bootstrap_ci_multilabel(
    y_true: Any,
    proba: Any,
    *,
    metrics: str | Sequence[str],
    labels: Sequence[str],
    thresholds: Any = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals over the evaluated rows, paired across metrics and labels.

    The thresholds stay fixed (tuned off the test set); resamples on which a value is undefined are
    left out of its interval, and a value undefined on all of them gets (nan, nan).

    Returns:
        Metric name → (low, high).
    """
    check_confidence(confidence)
    data, names = _prepare(y_true, proba, metrics=metrics, labels=labels, thresholds=thresholds)
    parts = [_evaluate(data, names, counts) for counts in resampled_counts(seed, data.n, n_resamples)]
    return {name: percentile_interval(np.concatenate([p[name] for p in parts]), confidence) for name in names}


def _unknown(name: object) -> MetricError:
    return MetricError(
        f"unknown multi-label metric {name!r}; choose from {', '.join(METRIC_LABELS)} or "
        "auroc[<label>], ap[<label>], f1[<label>]."
    )
