"""Evaluation plans on stored features: full data, n shots per class × seeds, label fractions, episodes.

A plan turns one :class:`~probe.evaldata.EvalData` into result rows: it draws the training samples
(:mod:`probe.sampling`, identical for every head and backbone), runs each head on every draw
(:mod:`probe._head_runs`, batched where the head allows), and scores the evaluation split with
:mod:`probe.metrics` (a seeded bootstrap CI per row).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from probe import _multilabel_runs as MLR
from probe import metrics as M
from probe import metrics_multilabel as ML
from probe._head_runs import HEAD_RUNNERS, Evaluation, Task
from probe.errors import MetricError, ProtocolError, UnknownHeadError
from probe.evaldata import EvalData
from probe.fusion import ViewConfig
from probe.provenance import library_versions
from probe.results import ResultRow
from probe.sampling import ALL, check_shots, draw_fraction, draw_queries, draw_shot_levels

DEFAULT_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc", "mcc")
DEFAULT_SHOTS: tuple[int | str, ...] = (1, 2, 4, 8, 16, 32, 64, ALL)
VERSIONED = ("numpy", "scipy", "scikit-learn", "faiss-cpu", "faiss-gpu", "torch")


@dataclass(frozen=True)
class KNNConfig:
    """kNN head settings."""

    k: tuple[int, ...] = (20,)  # neighbours; several k are answered from one search (head "knn-k<k>")
    vote: str = "temperature"  # "temperature" (exp(sim/T)), "uniform" or "distance"
    temperature: float = 0.07  # T of the temperature vote


@dataclass(frozen=True)
class LinearConfig:
    """Logistic-regression head settings."""

    C: float | str = "auto"  # inverse L2 strength, or "auto" to select it (val grid / CV in the support)
    c_grid: tuple[float, ...] | None = None  # candidate Cs (None: the head's coarse-to-fine log grid)
    selection: str = "auto"  # "auto", "val", "cv" or "fixed"
    refit: str = "train"  # after choosing C on val: refit on "train" or "train+val"
    standardize: bool = True  # z-score features with the training rows' statistics
    max_iter: int = 1000  # L-BFGS iterations per problem
    precision: str = "auto"  # solver precision: "auto" (float64 on CPU, float32 on CUDA), "float32", "float64"


@dataclass(frozen=True)
class PrototypeConfig:
    """Prototype head settings."""

    method: str = "simpleshot"  # "simpleshot" (centre, L2-normalise, nearest centroid) or "centroid"
    temperature: float = 0.1  # softmax temperature over cosine similarities


@dataclass(frozen=True)
class LabelSpreadConfig:
    """Label-spreading head settings (semi-supervised: train rows outside a draw are unlabelled)."""

    n_neighbors: int = 20  # graph neighbours per row and per query (capped at train rows - 1)
    alpha: float = 0.99  # spreading strength in (0, 1): larger trusts the graph more than the labels
    weight: str = "cosine"  # edge weight: "cosine" (max(sim, 0) ** power) or "connectivity" (1)
    power: float = 3.0  # exponent of the cosine edge weight
    class_mass: bool = True  # rescale each class's spread mass to its share of the labelled rows
    tol: float = 1e-6  # relative residual at which the conjugate-gradient solve stops
    max_iter: int = 500  # conjugate-gradient iterations at most

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ProtocolError(f"--spread-alpha {self.alpha} must lie in (0, 1), e.g. 0.99")
        if self.n_neighbors < 1:
            raise ProtocolError(f"--spread-neighbors {self.n_neighbors} must be >= 1, e.g. 20")


@dataclass(frozen=True)
class PlanConfig:
    """What to evaluate: heads × label levels × seeds, and how to score it."""

    heads: tuple[str, ...] = ("knn", "linear", "prototype")  # registered head names
    shots: tuple[int | str, ...] = DEFAULT_SHOTS  # labels per class; "all" = the whole train split
    fractions: tuple[float, ...] = ()  # stratified label fractions in (0, 1]
    seeds: int = 5  # draws per shot level / fraction (seeds seed .. seed+seeds-1)
    seed: int = 0  # first seed
    episodes: int = 0  # > 0: few-shot episodes (one support draw + one query sample each) instead of seeds
    queries: int | None = None  # query samples per class per episode (None: the whole evaluation split)
    metrics: tuple[str, ...] = DEFAULT_METRICS  # plus "qwk" automatically for ordinal datasets
    bootstrap: int = 1000  # bootstrap resamples for the per-row CI (0: none)
    strict: bool = False  # error instead of capping a class with fewer samples than the shots
    device: str = "auto"  # where accelerated heads run
    knn: KNNConfig = field(default_factory=KNNConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    prototype: PrototypeConfig = field(default_factory=PrototypeConfig)
    labelspread: LabelSpreadConfig = field(default_factory=LabelSpreadConfig)
    views: ViewConfig = field(default_factory=ViewConfig)  # fusion, modality dropout, ablation (multi-view)

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ProtocolError(f"--seeds {self.seeds}: use at least 1 seed (5-10 give useful confidence intervals)")
        if self.episodes < 0:
            raise ProtocolError(f"--episodes {self.episodes} must be >= 0")
        if not self.heads:
            raise ProtocolError("no heads given; use --heads knn,linear,prototype")
        for head in self.heads:
            if head not in HEAD_RUNNERS:
                raise UnknownHeadError(f"unknown head {head!r}; choose from {', '.join(HEAD_RUNNERS)}")
        for shots in self.shots:
            check_shots(shots)
        check_metric_names(self.metrics)
        if self.bootstrap < 0:
            raise ProtocolError(f"--bootstrap {self.bootstrap} must be >= 0")
        if not self.shots and not self.fractions:
            raise ProtocolError("nothing to evaluate: give --shots and/or --fractions")


def check_metric_names(names: Sequence[str]) -> None:
    """Raise :class:`~probe.errors.MetricError` for a name :mod:`probe.metrics` does not know."""
    for name in names:
        if name not in M.METRICS and not re.fullmatch(r"recall\[\d+\]", name) and not ML.is_metric_name(name):
            raise MetricError(
                f"unknown metric {name!r}; choose from {', '.join(M.METRICS)}, recall[<class index>] "
                f"(multi-label: {', '.join(ML.METRIC_LABELS)}, auroc[<label>], ap[<label>], f1[<label>])"
            )


def build_tasks(data: EvalData, plan: PlanConfig) -> list[Task]:
    """Every training draw of the plan, in a fixed order (seeded; equal for every head and backbone)."""
    tr = data.train
    tasks: list[Task] = []
    numeric = [s for s in plan.shots if s != ALL]
    if plan.episodes:
        for e in range(plan.episodes):
            seed = plan.seed + e
            queries = draw_queries(
                data.test.ids, data.test.y, per_class=plan.queries, seed=seed, n_classes=data.n_classes
            )
            for d in draw_shot_levels(
                tr.ids, tr.y, tr.groups, shots=numeric, seed=seed, n_classes=data.n_classes, strict=plan.strict
            ):
                tasks.append(Task(draw=d, protocol="episodes", eval_rows=queries))
        return tasks
    for seed in range(plan.seed, plan.seed + plan.seeds):
        for d in draw_shot_levels(
            tr.ids, tr.y, tr.groups, shots=numeric, seed=seed, n_classes=data.n_classes, strict=plan.strict
        ):
            tasks.append(Task(draw=d, protocol="shots"))
        for fraction in plan.fractions:
            d = draw_fraction(tr.ids, tr.y, tr.groups, fraction=fraction, seed=seed, n_classes=data.n_classes)
            tasks.append(Task(draw=d, protocol="fraction"))
    if ALL in plan.shots:  # deterministic given the data: evaluated once, with the first seed
        (d,) = draw_shot_levels(tr.ids, tr.y, tr.groups, shots=[ALL], seed=plan.seed, n_classes=data.n_classes)
        tasks.append(Task(draw=d, protocol="full"))
    return tasks


def plan_metrics(data: EvalData, plan: PlanConfig) -> tuple[str, ...]:
    """The plan's metrics, with quadratic kappa added for ordinal datasets (multi-label: see metrics_multilabel)."""
    if data.task == "multilabel":
        return MLR.plan_metrics(data, tuple(plan.metrics), default=tuple(plan.metrics) == DEFAULT_METRICS)
    names = tuple(plan.metrics)
    if data.task == "ordinal" and "qwk" not in names:
        names += ("qwk",)
    return names


def run_plan(data: EvalData, plan: PlanConfig, *, run_id: str | None = None) -> list[ResultRow]:
    """Evaluate every head of ``plan`` on ``data``.

    Returns:
        One row per (head, draw, metric), in head → draw → metric order.
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    if data.views:  # multi-view stores: modality ablation rows and modality dropout (probe._view_plan)
        from probe._view_plan import needs_view_plan, run_view_plan

        if needs_view_plan(data, plan):
            return run_view_plan(data, plan, run_id=run_id)
    elif plan.views.modality_dropout > 0:
        raise ProtocolError("--modality-dropout applies to multi-modal stores; this store has one image per sample")
    tasks = build_tasks(data, plan)
    if not tasks:
        raise ProtocolError("the plan has no draws: give numeric --shots with --episodes, or 'all'")
    names = plan_metrics(data, plan)
    versions = library_versions(*VERSIONED)
    rows: list[ResultRow] = []
    for head in plan.heads:
        runner = MLR.multilabel_runner(head) if data.task == "multilabel" else HEAD_RUNNERS[head]
        for ev in runner(data, tasks, plan):
            rows.extend(score(data, ev, names=names, plan=plan, run_id=run_id, versions=versions))
    return rows


def score(
    data: EvalData, ev: Evaluation, *, names: Sequence[str], plan: PlanConfig, run_id: str, versions: dict[str, str]
) -> list[ResultRow]:
    """Metric rows of one evaluation (with the bootstrap CI over the evaluated samples)."""
    task = ev.task
    sel = task.eval_rows if task.eval_rows is not None else slice(None)
    y_true, proba = data.test.y[sel], ev.proba[sel]
    n_boot = 0 if task.protocol == "episodes" else plan.bootstrap
    cis: dict[str, tuple[float, float]] = {}
    if data.task == "multilabel":  # per-label and macro values, F1 at the runner's tuned thresholds
        values, cis = MLR.score_values(data, ev, y_true, proba, names=tuple(names), n_boot=n_boot)
    else:
        values = M.compute_metrics(y_true, proba, metrics=names)
        if n_boot:
            cis = M.bootstrap_ci(y_true, proba, metrics=names, n_resamples=n_boot, seed=task.draw.seed)
    n_train = int(task.draw.rows.size)
    per_class = n_train / data.n_classes
    if data.task == "multilabel":  # x of a multi-label draw: positives per label
        per_class = MLR.positives_per_label(data.train.y[task.draw.rows])
    common: dict[str, Any] = {
        "dataset": data.dataset,
        "backbone": data.backbone,
        "pooling": data.pooling,
        "head": ev.head,
        "protocol": task.protocol,
        "shots": task.draw.shots,
        "fraction": task.draw.fraction,
        "seed": task.draw.seed,
        "ci_method": f"bootstrap-{n_boot}" if n_boot else "none",
        "n_train": n_train,
        "n_test": int(y_true.shape[0]),
        "n_classes": data.n_classes,
        "labels_per_class": per_class,
        "params": {**ev.params, **({"caps": task.draw.caps} if task.draw.caps else {}), **data.notes},
        "split": data.eval_split,
        "store_fingerprint": data.store_fingerprint,
        "sample_digest": task.draw.digest,
        "seconds": round(ev.seconds, 4),
        "versions": versions,
        "run_id": run_id,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return [
        ResultRow(
            metric=m, value=float(v), ci_low=cis.get(m, (None, None))[0], ci_high=cis.get(m, (None, None))[1], **common
        )
        for m, v in values.items()
    ]
