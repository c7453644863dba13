"""Metrics: classification and multi-label scores with bootstrap intervals, and statistics across seeds.

- :mod:`probe.metrics.classification`: accuracy, balanced accuracy, macro-F1, AUROC, MCC, kappa, MedMNIST's
  own ACC/AUC, per-class recall; point values and paired bootstrap CIs over the test set.
- :mod:`probe.metrics.multilabel`: per-label and macro AUROC, AP and F1 at tuned thresholds.
- :mod:`probe.metrics.seeds`: Student-t mean intervals and paired comparisons across seeds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from probe.errors import MetricError
from probe.metrics import classification, multilabel, segmentation
from probe.metrics.classification import (
    METRIC_LABELS,
    METRICS,
    bootstrap_ci,
    bootstrap_distribution,
    compute_metrics,
    metrics_and_ci,
)
from probe.metrics.multilabel import (
    bootstrap_ci_multilabel,
    compute_multilabel_metrics,
    tune_thresholds,
)
from probe.metrics.seeds import MIN_SEEDS, PairedComparison, mean_ci, paired_comparison

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "MIN_SEEDS",
    "PairedComparison",
    "bootstrap_ci",
    "bootstrap_ci_multilabel",
    "bootstrap_distribution",
    "check_metric_names",
    "compute_metrics",
    "compute_multilabel_metrics",
    "mean_ci",
    "metric_direction",
    "metric_label",
    "metric_range",
    "metrics_and_ci",
    "paired_comparison",
    "tune_thresholds",
]


def metric_label(name: str) -> str:
    """Human label of any metric name, e.g. ``"balanced accuracy"`` or ``"AUROC of Cardiomegaly"``.

    Raises:
        MetricError: neither a classification nor a multi-label metric name.
    """
    if segmentation.is_seg_metric(name):
        return segmentation.seg_metric_label(name)
    if multilabel.is_metric_name(name) and name not in METRIC_LABELS:
        return multilabel.metric_label(name)
    return classification.metric_label(name)


def metric_direction(name: str) -> str:
    """``"higher"`` for every metric but HD95 (a distance: ``"lower"``); the name is validated."""
    metric_label(name)
    return segmentation.seg_metric_direction(name) if segmentation.is_seg_metric(name) else "higher"


def metric_range(name: str) -> tuple[float, float] | None:
    """(low, high) values a metric can take: [-1, 1] for MCC and quadratic weighted kappa, None for
    unbounded ones (HD95, a distance in pixels), else [0, 1]."""
    if segmentation.is_seg_metric(name):
        return segmentation.seg_metric_range(name)
    return (-1.0, 1.0) if name in ("mcc", "qwk") else (0.0, 1.0)


def check_metric_names(names: Sequence[str]) -> None:
    """Raise :class:`~probe.errors.MetricError` for a name no task kind knows."""
    for name in names:
        known = name in METRICS or multilabel.is_metric_name(name) or segmentation.is_seg_metric(name)
        if not known and not re.fullmatch(r"recall\[\d+\]", name):
            raise MetricError(
                f"unknown metric {name!r}; choose from {', '.join(METRICS)}, recall[<class index>] "
                f"(multi-label: {', '.join(multilabel.METRIC_LABELS)}, auroc[<label>], ap[<label>], f1[<label>]; "
                f"segmentation: {', '.join(segmentation.SEG_METRICS)}, dice:<class>, iou:<class>)"
            )
