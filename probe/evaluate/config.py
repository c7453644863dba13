"""What an evaluation plan asks for, and the one registry of head runners.

:class:`PlanConfig` (with one frozen config per head) says which heads, label levels, seeds and
metrics to evaluate. A :class:`Task` is one training draw and where it is scored; a runner answers
every task of a plan for one head and returns an :class:`Evaluation` per task. Runners are
registered once per (head, task family) — ``"single-label"`` serves the multiclass, binary and
ordinal task kinds, ``"multi-label"`` the multi-label one (:mod:`probe.evaluate.kinds`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.errors import ProtocolError, RegistryError, UnknownHeadError
from probe.evaluate.defaults import DEFAULT_METRICS, DEFAULT_PREPROCESSING, DEFAULT_SEEDS, DEFAULT_SHOTS, POLICIES
from probe.evaluate.fusion import ViewConfig
from probe.evaluate.sampling import Draw, check_shots
from probe.metrics import check_metric_names

if TYPE_CHECKING:
    from probe.evaluate.data import EvalData

FAMILIES: tuple[str, ...] = ("single-label", "multi-label", "segmentation")


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
    standardize: bool = True  # z-score with the drawn rows' statistics (PlanConfig(preprocessing) "support" only)
    max_iter: int = 1000  # L-BFGS iterations per problem
    # solver precision: "float32" products (the softmax, sums and L-BFGS state stay float64; on BloodMNIST the
    # curve equals float64's, docs/benchmarks.md), "float64", or "auto" (float64 on CPU, float32 on CUDA)
    precision: str = "float32"
    # gradient tolerance of the fits that only rank C (CV folds inside a support, the full-data validation
    # grid); the kept fit at the chosen C stops at scikit-learn's 1e-4. On the demo's BloodMNIST curve (10
    # seeds) 3e-4 kept the mean balanced accuracy of every level within 0.2 pp (docs/benchmarks.md); None
    # ranks at 1e-4 too
    selection_tol: float | None = 3e-4

    def __post_init__(self) -> None:
        t = self.selection_tol
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < float("inf")):
            raise ProtocolError(f"LinearConfig(selection_tol={t!r}) must be a number > 0 (e.g. 3e-4) or None (= 1e-4)")


@dataclass(frozen=True)
class PrototypeConfig:
    """Prototype head settings."""

    # "simpleshot" (Wang et al. 2019: centre on the train split's mean, L2-normalise, Euclidean nearest
    # class mean), "cosine" (centre on the support's mean, cosine to re-normalised class means: the rule
    # probe called simpleshot before results schema 2) or "centroid" (raw Euclidean nearest class mean)
    method: str = "simpleshot"
    temperature: float = 0.1  # softmax temperature over the class scores (probabilities only, not predictions)

    def __post_init__(self) -> None:
        if self.method not in ("simpleshot", "cosine", "centroid"):
            raise ProtocolError(
                f"PrototypeConfig(method={self.method!r}) is unknown; use simpleshot, cosine or centroid"
            )


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
            raise ProtocolError(f"LabelSpreadConfig(alpha={self.alpha}) must lie in (0, 1), e.g. 0.99")
        if self.n_neighbors < 1:
            raise ProtocolError(f"LabelSpreadConfig(n_neighbors={self.n_neighbors}) must be >= 1, e.g. 20")


@dataclass(frozen=True)
class SegConfig:
    """Segmentation head settings (``seg-linear``, ``seg-knn``, ``seg-conv`` on stored patch grids)."""

    # seg-linear: soft-label multinomial logistic regression per patch on train-pool-standardised
    # features. Full data: C chosen by mean foreground Dice on the validation split over c_grid; few-shot
    # draws never read validation labels and use C, fixed in advance: weak regularisation, chosen on the
    # *validation* slices of bench/bench_dense.py (mean val Dice at 1 / 2 labelled slices: C=1 0.226 /
    # 0.286, C=100 0.302 / 0.346, C=1000 0.333 / 0.350, C=1e4 0.332 / 0.347; equal from 8 slices on)
    C: float = 1000.0
    c_grid: tuple[float, ...] = (0.1, 10.0, 1000.0)  # candidates on val for the full-data setting
    max_iter: int = 500  # L-BFGS iterations per problem
    # seg-linear solver: float32 products and scikit-learn's gradient tolerance 1e-3 — on the dense
    # benchmark 2.3x faster than float64 at 1e-4 (1.6 s vs 3.7-5.0 s for 26 draws) with test Dice within
    # 0.5 point at every level but 2 slices (+1.6)
    tol: float = 1e-3
    precision: str = "float32"
    k: int = 20  # seg-knn: labelled patches voting for each test patch
    temperature: float = 0.07  # seg-knn: softmax temperature of the cosine similarities
    hidden: int = 128  # seg-conv: channels of the decoder's 3x3 convolution
    epochs: int = 30  # seg-conv: fixed training epochs (no early stopping: few-shot never reads val)
    lr: float = 1e-3  # seg-conv: AdamW learning rate
    weight_decay: float = 1e-4  # seg-conv: AdamW weight decay

    def __post_init__(self) -> None:
        if self.C <= 0 or any(c <= 0 for c in self.c_grid) or not self.c_grid:
            raise ProtocolError(f"SegConfig(C={self.C}, c_grid={self.c_grid}): C values must be positive")
        if self.k < 1 or self.epochs < 1 or self.hidden < 1:
            raise ProtocolError(f"SegConfig(k={self.k}, epochs={self.epochs}, hidden={self.hidden}) must all be >= 1")


@dataclass(frozen=True)
class PlanConfig:
    """What to evaluate: heads × label levels × seeds, and how to score it."""

    heads: tuple[str, ...] = ("knn", "linear", "prototype")  # registered head names
    shots: tuple[int | str, ...] = DEFAULT_SHOTS  # labels per class; "all" = the whole train split
    fractions: tuple[float, ...] = ()  # stratified label fractions in (0, 1]
    seeds: int = DEFAULT_SEEDS  # draws per shot level / fraction (seeds seed .. seed+seeds-1)
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
    seg: SegConfig = field(default_factory=SegConfig)  # segmentation heads (stores of patch grids)
    views: ViewConfig = field(default_factory=ViewConfig)  # fusion, modality dropout, ablation (multi-view)
    # features given to the linear and label-spreading heads (probe.evaluate.preprocessing.POLICIES):
    # "support" (the linear head z-scores with the drawn rows' own statistics), "pool-standardise" or
    # "pool-centre-l2" (statistics of the train split's features, never labels, never val/test)
    preprocessing: str = DEFAULT_PREPROCESSING

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ProtocolError(
                f"PlanConfig(seeds={self.seeds}): use at least 1 seed (5-10 give useful confidence intervals)"
            )
        if self.episodes < 0:
            raise ProtocolError(f"PlanConfig(episodes={self.episodes}) must be >= 0")
        if not self.heads:
            raise ProtocolError("no heads given; name them, e.g. PlanConfig(heads=knn,linear,prototype)")
        known = head_names()
        for head in self.heads:
            if head not in known:
                raise UnknownHeadError(f"unknown head {head!r}; choose from {', '.join(known)}")
        for shots in self.shots:
            check_shots(shots)
        check_metric_names(self.metrics)
        if self.bootstrap < 0:
            raise ProtocolError(f"PlanConfig(bootstrap={self.bootstrap}) must be >= 0")
        if self.preprocessing not in POLICIES:
            raise ProtocolError(
                f"PlanConfig(preprocessing={self.preprocessing!r}) is unknown; use one of {', '.join(POLICIES)}"
            )
        if not self.shots and not self.fractions:
            raise ProtocolError(
                "nothing to evaluate: give PlanConfig(shots=1,4,16,all) and/or PlanConfig(fractions=0.1,1.0)"
            )


@dataclass(frozen=True)
class Task:
    """One training draw and where it is evaluated."""

    draw: Draw
    protocol: str  # "full", "shots", "fraction" or "episodes"
    eval_rows: np.ndarray | None = None  # (q,) query positions in the evaluation split (None: all rows)


@dataclass(frozen=True)
class Evaluation:
    """A head's answer on one task."""

    task: Task
    head: str  # row name of the head ("knn-k20" for every k, even one; "linear", "prototype")
    params: Mapping[str, Any]  # hyper-parameters used or chosen
    proba: np.ndarray  # (n_eval, n_classes) class (or per-label) probabilities on the whole evaluation split
    seconds: float  # wall time attributed to this task (batched runs: the batch time split evenly)


def head_setup(head: str, plan: PlanConfig) -> dict[str, Any]:
    """The settings of a row's head that change its numbers (the head's part of the row's setup).

    Args:
        head: the row's head name (``"knn-k20"``, ``"linear"``, ...).
        plan: the plan that ran it.
    """
    base = head.partition("-k")[0] if head.startswith("knn-k") else head
    dropout = base.startswith("linear-mdrop")  # the linear head with modality dropout (probe.evaluate.views)
    base = "linear" if dropout else base
    if base == "knn":
        return {"k": int(head.rpartition("-k")[2]), "vote": plan.knn.vote, "temperature": plan.knn.temperature}
    configs: dict[str, Any] = {"linear": plan.linear, "prototype": plan.prototype, "labelspread": plan.labelspread}
    if base in SEG_SETTINGS:
        return {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(plan.seg).items() if k in SEG_SETTINGS[base]
        }
    if base not in configs:
        return {}
    settings = {k: v for k, v in asdict(configs[base]).items() if k != "tol"}
    if base in ("linear", "labelspread"):
        settings["preprocessing"] = "support" if dropout else plan.preprocessing  # dropout copies: support only
    if base == "linear":
        settings["c_grid"] = None if plan.linear.c_grid is None else list(plan.linear.c_grid)
        if dropout:
            settings |= {"modality_dropout": plan.views.modality_dropout, "dropout_copies": plan.views.dropout_copies}
    return settings


#: The SegConfig fields that change each segmentation head's numbers (its part of a row's setup).
SEG_SETTINGS: dict[str, tuple[str, ...]] = {
    "seg-linear": ("C", "c_grid", "max_iter", "tol", "precision"),
    "seg-knn": ("k", "temperature"),
    "seg-conv": ("hidden", "epochs", "lr", "weight_decay"),
}

Runner = Callable[["EvalData", list[Task], PlanConfig], list[Evaluation]]
_RUNNERS: dict[tuple[str, str], Runner] = {}


def register_runner(head: str, *, family: str) -> Callable[[Runner], Runner]:
    """Register the runner of ``head`` for a task family (refuses duplicates and unknown families)."""
    if family not in FAMILIES:
        raise RegistryError(f"task family {family!r} is not one of {', '.join(FAMILIES)}")

    def deco(fn: Runner) -> Runner:
        if (head, family) in _RUNNERS:
            raise RegistryError(f"head {head!r} is registered twice for {family} tasks")
        _RUNNERS[(head, family)] = fn
        return fn

    return deco


def _load_runners() -> None:
    # the runner modules import this one (register_runner); loaded on first use, inside the package
    import probe.evaluate.multilabel
    import probe.evaluate.runners
    import probe.evaluate.segrunners  # noqa: F401


def head_names() -> tuple[str, ...]:
    """Every registered head, in registration order."""
    _load_runners()
    return tuple(dict.fromkeys(head for head, _ in _RUNNERS))


def runner_for(head: str, *, family: str) -> Runner:
    """The runner of ``head`` for a task family.

    Raises:
        ProtocolError: the head has no runner for that family (e.g. labelspread on multi-label data).
    """
    _load_runners()
    if (head, family) not in _RUNNERS:
        served = ", ".join(h for h, f in _RUNNERS if f == family)
        raise ProtocolError(f"head {head!r} does not support {family} data; use {served}")
    return _RUNNERS[(head, family)]
