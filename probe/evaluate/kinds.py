"""Task kinds: what differs between single-label and multi-label evaluation, in one table.

A :class:`TaskKind` carries the runner family that serves it, how a plan's metric names resolve for
a dataset, how one evaluation is scored (values and bootstrap CIs), and the x position of a draw on
a label-efficiency curve. The protocols look the kind up by :attr:`EvalData.task` and never branch
on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.errors import ProtocolError
from probe.evaluate.config import DEFAULT_METRICS, Evaluation, PlanConfig, Runner, Task, runner_for
from probe.evaluate.data import EvalData
from probe.evaluate.segmentation import labelled_units, seg_metrics, seg_score, seg_tasks, unit_range
from probe.metrics import bootstrap_ci_multilabel, compute_multilabel_metrics, metrics_and_ci
from probe.metrics import multilabel as ML

Scores = tuple[dict[str, float], dict[str, tuple[float, float]]]


@dataclass(frozen=True)
class TaskKind:
    """How one kind of target (multiclass, binary, ordinal, multi-label) is evaluated."""

    name: str  # EvalData.task value
    family: str  # runner family: "single-label" or "multi-label"
    metrics: Callable[[EvalData, tuple[str, ...]], tuple[str, ...]]  # plan metric names → this kind's names
    score: Callable[[EvalData, Evaluation, np.ndarray, np.ndarray, tuple[str, ...], int], Scores]
    x_position: Callable[[EvalData, np.ndarray], float]  # drawn train rows → labels per class (the curve's x)
    x_label: str  # what x_position counts
    x_range: Callable[[EvalData, np.ndarray], tuple[int, int]]  # drawn rows → smallest and largest class count
    tasks: Callable[[EvalData, PlanConfig], list[Task]] | None = None  # the kind's draws (None: label draws)

    def runner(self, head: str) -> Runner:
        """The runner of ``head`` for this kind (ProtocolError when the head does not serve it)."""
        return runner_for(head, family=self.family)


def _single_metrics(data: EvalData, names: tuple[str, ...]) -> tuple[str, ...]:
    return names


def _ordinal_metrics(data: EvalData, names: tuple[str, ...]) -> tuple[str, ...]:
    return names if "qwk" in names else (*names, "qwk")


def _multilabel_metrics(data: EvalData, names: tuple[str, ...]) -> tuple[str, ...]:
    chosen = ML.DEFAULT_METRICS if names == DEFAULT_METRICS else names  # the single-label defaults mean "defaults"
    return ML.resolve_metrics(chosen, labels=data.classes)


def _single_score(
    data: EvalData, ev: Evaluation, y_true: np.ndarray, proba: np.ndarray, names: tuple[str, ...], n_boot: int
) -> Scores:
    return metrics_and_ci(y_true, proba, metrics=names, n_resamples=n_boot, seed=ev.task.draw.seed)


def _multilabel_score(
    data: EvalData, ev: Evaluation, y_true: np.ndarray, proba: np.ndarray, names: tuple[str, ...], n_boot: int
) -> Scores:
    """Per-label and macro values, F1 at the thresholds the runner tuned off the evaluated split."""
    kwargs: dict[str, Any] = {"metrics": names, "labels": data.classes, "thresholds": ev.params.get("thresholds")}
    values = compute_multilabel_metrics(y_true, proba, **kwargs)
    cis = bootstrap_ci_multilabel(y_true, proba, n_resamples=n_boot, seed=ev.task.draw.seed, **kwargs) if n_boot else {}
    return values, cis


def _per_class(data: EvalData, rows: np.ndarray) -> float:
    return int(rows.size) / data.n_classes


def _positives_per_label(data: EvalData, rows: np.ndarray) -> float:
    return float((data.train.y[rows] == 1).sum(axis=0).mean())


def _class_count_range(data: EvalData, rows: np.ndarray) -> tuple[int, int]:
    counts = np.bincount(data.train.y[rows].astype(np.int64), minlength=data.n_classes)
    return int(counts.min()), int(counts.max())


def _positive_count_range(data: EvalData, rows: np.ndarray) -> tuple[int, int]:
    counts = (data.train.y[rows] == 1).sum(axis=0)
    return int(counts.min()), int(counts.max())


def _single_label(name: str, metrics: Callable[[EvalData, tuple[str, ...]], tuple[str, ...]]) -> TaskKind:
    return TaskKind(name, "single-label", metrics, _single_score, _per_class, "labels per class", _class_count_range)


TASK_KINDS: dict[str, TaskKind] = {
    "multiclass": _single_label("multiclass", _single_metrics),
    "binary": _single_label("binary", _single_metrics),
    "ordinal": _single_label("ordinal", _ordinal_metrics),
    "multilabel": TaskKind(
        name="multilabel",
        family="multi-label",
        metrics=_multilabel_metrics,
        score=_multilabel_score,
        x_position=_positives_per_label,
        x_label="positives per label",
        x_range=_positive_count_range,
    ),
    "segmentation": TaskKind(
        name="segmentation",
        family="segmentation",
        metrics=seg_metrics,
        score=seg_score,
        x_position=labelled_units,
        x_label="labelled images (or volumes)",
        x_range=unit_range,
        tasks=seg_tasks,
    ),
}


def task_kind(data: EvalData) -> TaskKind:
    """The kind of ``data``'s targets.

    Raises:
        ProtocolError: a task name no kind is registered for.
    """
    if data.task not in TASK_KINDS:
        raise ProtocolError(f"{data.dataset}: task {data.task!r} is not one of {', '.join(TASK_KINDS)}")
    return TASK_KINDS[data.task]


def plan_metrics(data: EvalData, plan: PlanConfig) -> tuple[str, ...]:
    """The metric names a plan scores on ``data`` (qwk added for ordinal sets, per-label names expanded)."""
    return task_kind(data).metrics(data, tuple(plan.metrics))
