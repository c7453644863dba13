"""Choosing C for linear probes: validation grids, k-fold CV inside the support, and the fixed rule.

Each support's selection is a small generator that yields the logistic problems it needs next and
receives their solutions. :func:`select_and_fit` runs every support's generator in lockstep, so one
round of every support (all C of a grid, all folds) goes through one batched solve.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedKFold

from probe.errors import HeadError
from probe.heads._logistic import PRECISIONS, LinearProblem, LinearSolution, check_device, solve_logistic_batch

# Coarse grid: nine decades 1e-4 ... 1e4 around scikit-learn's default C = 1.
COARSE_GRID = tuple(10.0**k for k in range(-4, 5))
# Fine grid: this many points spanning one decade either side of the best coarse C.
FINE_POINTS = 7
# C used when CV cannot run (a class with a single example, e.g. 1-shot). scikit-learn's default,
# on standardised features; no labels beyond the support set are consulted to pick it.
RULE_C = 1.0
SELECTIONS = ("auto", "val", "cv")
REFITS = ("train", "train+val")
METRICS = ("accuracy", "balanced_accuracy", "neg_log_loss")
# The coarse validation grid runs in these rounds; a later round runs only while the last PAST_PEAK
# Cs solved do not all score below the best so far (on BloodMNIST's full data the best C is 0.01 and
# the four largest Cs, which take 98-159 iterations each, are never solved).
COARSE_ROUNDS = (COARSE_GRID[:5], COARSE_GRID[5:])
PAST_PEAK = 2
# Scores closer than this count as tied (the smaller C wins).
TIE_EPS = 1e-12


@dataclass(frozen=True)
class LinearProbeConfig:
    """Everything that decides how a linear probe is fitted (see :class:`probe.heads.linear.LinearProbe`)."""

    # Inverse L2 strength (> 0), or "auto" to select it.
    C: float | str = "auto"
    # Candidate C values; None: coarse-to-fine on validation data, COARSE_GRID for CV.
    c_grid: tuple[float, ...] | None = None
    # Standardise features by the mean/std of each fit's own training rows.
    standardize: bool = True
    # How "auto" C is chosen: "auto" (val when X_val is given, else CV), "val" or "cv".
    selection: str = "auto"
    # Folds of the CV inside the training set (fewer when a class has fewer examples).
    cv_folds: int = 5
    # Final fit on "train" rows, or "train+val" rows (needs X_val).
    refit: str = "train"
    # Selection score, higher is better: "accuracy", "balanced_accuracy" or "neg_log_loss".
    select_metric: str = "accuracy"
    # L-BFGS iterations per fit at most.
    max_iter: int = 1000
    # Gradient tolerance, scikit-learn's ``tol`` of LogisticRegression(solver="lbfgs").
    tol: float = 1e-4
    # Gradient tolerance of the fits that only rank C (CV folds, the validation grid); the fit that is
    # kept (the refit at the chosen C, or the chosen grid fit continued from where it stopped) stops at
    # ``tol``. None: ``tol`` (and the chosen validation-grid fit is kept as it is).
    selection_tol: float | None = None
    # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # dtype of the feature products: "auto" (float64 on CPU, float32 on CUDA), "float64", "float32".
    precision: str = "auto"
    # Seed of the CV fold split.
    seed: int = 0
    # Rough memory budget of one batched solve chunk.
    batch_memory_mb: int = 1024

    def __post_init__(self) -> None:
        if isinstance(self.C, str):
            if self.C != "auto":
                raise HeadError(f"C={self.C!r} is not understood; pass a number > 0 or 'auto'.")
        elif not _positive(self.C):
            raise HeadError(f"C must be a finite number > 0 or 'auto'; got {self.C!r}.")
        elif self.selection != "auto":
            raise HeadError(
                f"C={self.C!r} fixes the penalty; pass C='auto' to choose it by selection={self.selection!r}."
            )
        if self.c_grid is not None:
            grid = tuple(self.c_grid)
            if not grid or not all(_positive(c) for c in grid):
                raise HeadError(f"c_grid must hold finite numbers > 0; got {self.c_grid!r}.")
            object.__setattr__(self, "c_grid", tuple(sorted({float(c) for c in grid})))
        for name, value, allowed in (
            ("selection", self.selection, SELECTIONS),
            ("refit", self.refit, REFITS),
            ("select_metric", self.select_metric, METRICS),
            ("precision", self.precision, PRECISIONS),
        ):
            if value not in allowed:
                raise HeadError(f"unknown {name} {value!r}; use one of {', '.join(allowed)}.")
        check_device(self.device, owner="LinearProbe")
        for key, number, low in (("cv_folds", self.cv_folds, 2), ("max_iter", self.max_iter, 1)):
            if not isinstance(number, int | np.integer) or isinstance(number, bool) or number < low:
                raise HeadError(f"{key} must be an int >= {low}; got {number!r}.")
        if not _positive(self.tol):
            raise HeadError(f"tol must be a finite number > 0; got {self.tol!r} (scikit-learn's default is 1e-4).")
        if self.selection_tol is not None and not _positive(self.selection_tol):
            raise HeadError(f"selection_tol must be a finite number > 0 or None (= tol); got {self.selection_tol!r}.")


def _positive(x: object) -> bool:
    return isinstance(x, int | float | np.number) and not isinstance(x, bool) and bool(np.isfinite(x) and x > 0)


@dataclass(frozen=True)
class SelectedFit:
    """The outcome for one support: the chosen C, how it was chosen, and the final solution."""

    # The chosen C.
    C: float
    # How: "fixed", "val-grid", "cv<k>-support" or "rule:fixed-C=<C>".
    selection: str
    # Final fit (original feature space).
    solution: LinearSolution
    # C -> mean CV score (empty unless CV ran).
    cv_scores: dict[float, float] = field(default_factory=dict)
    # C -> validation score (empty unless validation selection ran).
    val_scores: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """Data shared by every support of one call."""

    # (n_all, d) float32 training rows followed by validation rows.
    X: np.ndarray
    # (n_all,) int64 class indices into ``classes``.
    y: np.ndarray
    # (n_val,) row indices of the validation rows in X (empty without validation data).
    val_rows: np.ndarray
    # The options.
    cfg: LinearProbeConfig


Plan = Generator[list[LinearProblem], list[LinearSolution], SelectedFit]


def plan_support(ctx: Context, rows: np.ndarray) -> Plan:
    """The selection of one support (its training rows), as a generator of problem requests."""
    cfg = ctx.cfg
    has_val = ctx.val_rows.size > 0
    final_rows = np.concatenate([rows, ctx.val_rows]) if cfg.refit == "train+val" else rows
    if not isinstance(cfg.C, str):
        sol = (yield [_problem(ctx, final_rows, cfg.C)])[0]
        return SelectedFit(C=float(cfg.C), selection="fixed", solution=sol)
    if cfg.selection == "val" or (cfg.selection == "auto" and has_val):
        return (yield from _plan_val(ctx, rows, final_rows))
    counts = np.unique(ctx.y[rows], return_counts=True)[1]
    folds = min(cfg.cv_folds, int(counts.min()))
    if folds < 2:
        sol = (yield [_problem(ctx, final_rows, RULE_C)])[0]
        return SelectedFit(C=RULE_C, selection=f"rule:fixed-C={RULE_C:g}", solution=sol)
    return (yield from _plan_cv(ctx, rows, final_rows, folds))


def _plan_val(ctx: Context, rows: np.ndarray, final_rows: np.ndarray) -> Plan:
    """C by validation score: an explicit grid, or coarse then fine around the best coarse C.

    The grid fits only rank C and stop at ``selection_tol``; the chosen C's fit then goes on to
    ``tol`` from where it stopped (with ``selection_tol=None`` every grid fit stops at ``tol`` and the
    chosen one is kept as it is). Rounds are what cost here, not problems: a batched round of a few Cs
    takes about as long as its slowest fit, so the grid runs at the looser tolerance and only one fit
    runs on to ``tol`` (BloodMNIST's full data, in-process: 8.7 s -> 7.4 s, same C; docs/benchmarks.md).
    """
    loose = ctx.cfg.selection_tol
    if ctx.cfg.c_grid is not None:  # an explicit grid: every C in one batched solve
        grid = ctx.cfg.c_grid
        solved = dict(zip(grid, (yield [_problem(ctx, rows, C, tol=loose) for C in grid]), strict=True))
        scores = {C: _score(s, ctx, ctx.val_rows) for C, s in solved.items()}
    else:  # coarse, then fine around the best
        solved, scores = yield from _coarse_path(ctx, rows)
        best = _best(scores)
        fine = [C for C in best * np.logspace(-1, 1, FINE_POINTS) if not np.isclose(list(scores), C).any()]
        # Each fine C starts from the coarse solution nearest in log C (the same rows): it is already
        # close, so L-BFGS needs a fraction of the iterations of a start at zero.
        near = [solved[_nearest(solved, C)] for C in fine]
        requests = [_problem(ctx, rows, C, init=s0, tol=loose) for C, s0 in zip(fine, near, strict=True)]
        for C, s in zip(fine, (yield requests), strict=True):
            solved[float(C)] = s
            scores[float(C)] = _score(s, ctx, ctx.val_rows)
    scores = dict(sorted(scores.items()))
    C = _best(scores)
    if ctx.cfg.refit == "train+val":  # the train fit at C is a close start on train+val rows
        final = (yield [_problem(ctx, final_rows, C, init=solved[C])])[0]
    elif loose is None:
        final = solved[C]
    else:  # the same trajectory, on to tol: its iterations count from zero
        final = (yield [_problem(ctx, rows, C, init=solved[C])])[0]
        final = dataclasses.replace(final, n_iter=solved[C].n_iter + final.n_iter)
    return SelectedFit(C=C, selection="val-grid", solution=final, val_scores=scores)


def _coarse_path(
    ctx: Context, rows: np.ndarray
) -> Generator[list[LinearProblem], list[LinearSolution], tuple[dict[float, LinearSolution], dict[float, float]]]:
    """The coarse validation grid in two batched rounds, C up to 1 and then above: the second round is
    skipped when the last :data:`PAST_PEAK` Cs of the first score below its best (the validation score
    has turned down; the large Cs are the slowest to fit)."""
    solved: dict[float, LinearSolution] = {}
    scores: dict[float, float] = {}
    for grid in COARSE_ROUNDS:
        tol = ctx.cfg.selection_tol
        solved |= dict(zip(grid, (yield [_problem(ctx, rows, C, tol=tol) for C in grid]), strict=True))
        scores |= {C: _score(solved[C], ctx, ctx.val_rows) for C in grid}
        best = max(scores.values())
        if all(v < best - TIE_EPS for v in list(scores.values())[-PAST_PEAK:]):
            break
    return solved, scores


def _plan_cv(ctx: Context, rows: np.ndarray, final_rows: np.ndarray, folds: int) -> Plan:
    grid = ctx.cfg.c_grid or COARSE_GRID
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=ctx.cfg.seed)
    splits = list(splitter.split(np.zeros((rows.size, 1)), ctx.y[rows]))
    sols = yield [_problem(ctx, rows[train], C, tol=ctx.cfg.selection_tol) for train, _ in splits for C in grid]
    per_fold = np.array(
        [
            [_score(sols[f * len(grid) + j], ctx, rows[test]) for j in range(len(grid))]
            for f, (_, test) in enumerate(splits)
        ]
    )
    scores = {C: float(s) for C, s in zip(grid, per_fold.mean(0), strict=True)}
    C = _best(scores)
    final = (yield [_problem(ctx, final_rows, C)])[0]
    return SelectedFit(C=C, selection=f"cv{folds}-support", solution=final, cv_scores=scores)


def _nearest(solved: dict[float, LinearSolution], C: float) -> float:
    """The solved C closest to C in log scale (the smaller on a tie)."""
    return min(sorted(solved), key=lambda c: abs(float(np.log(c / C))))


def _problem(
    ctx: Context, rows: np.ndarray, C: float, init: LinearSolution | None = None, tol: float | None = None
) -> LinearProblem:
    return LinearProblem(rows=rows, y=ctx.y[rows], C=float(C), init=init, tol=tol)


def _best(scores: dict[float, float]) -> float:
    """Smallest C among the best scores."""
    top = max(scores.values())
    return min(C for C, s in scores.items() if s >= top - TIE_EPS)


def decision(sol: LinearSolution, X: np.ndarray) -> np.ndarray:
    """(n, k) scores over the solution's classes (binary: [0, log-odds]) of rows X (n, d)."""
    z = X.astype(np.float64) @ sol.coef.T + sol.intercept
    return np.concatenate([np.zeros_like(z), z], axis=1) if sol.classes.size == 2 else z


def _score(sol: LinearSolution, ctx: Context, rows: np.ndarray) -> float:
    """The selection metric of one solution on rows of ctx.X (higher is better)."""
    z = decision(sol, ctx.X[rows])
    y = ctx.y[rows]
    pred = sol.classes[np.argmax(z, axis=1)]
    metric = ctx.cfg.select_metric
    if metric == "accuracy":
        return float(np.mean(pred == y))
    if metric == "balanced_accuracy":
        return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    column = np.full(max(int(y.max()), int(sol.classes.max())) + 1, -1)
    column[sol.classes] = np.arange(sol.classes.size)
    j = column[y]
    # A class the fit never saw has probability 0, clipped like scikit-learn's log_loss.
    logp_true = np.where(j >= 0, logp[np.arange(y.size), np.maximum(j, 0)], -np.inf)
    return float(np.mean(np.maximum(logp_true, np.log(1e-15))))


def select_and_fit(ctx: Context, supports: Sequence[np.ndarray], *, n_classes: int) -> list[SelectedFit]:
    """Run every support's selection, one batched solve per round of requests."""
    return run_plans(ctx.X, [plan_support(ctx, rows) for rows in supports], ctx.cfg, n_classes=n_classes)


def run_plans(X: np.ndarray, plans: list[Plan], cfg: LinearProbeConfig, *, n_classes: int) -> list[SelectedFit]:
    """Drive selection plans in lockstep: each round, every pending plan's problems go into one batched solve.

    Args:
        X: (n, d) rows the plans' problems index.
        plans: generators that yield lists of problems, receive their solutions, and return a fit.
        cfg: solver settings.
        n_classes: classes of every problem (2 for one-vs-rest labels).

    Returns:
        The plans' fits, in order.
    """
    results: list[SelectedFit | None] = [None] * len(plans)
    pending: dict[int, list[LinearProblem]] = {i: next(p) for i, p in enumerate(plans)}
    while pending:
        batch = [p for req in pending.values() for p in req]
        sols = solve_logistic_batch(
            X,
            batch,
            n_classes=n_classes,
            standardize=cfg.standardize,
            max_iter=cfg.max_iter,
            tol=cfg.tol,
            device=cfg.device,
            precision=cfg.precision,
            batch_memory_mb=cfg.batch_memory_mb,
        )
        nxt: dict[int, list[LinearProblem]] = {}
        start = 0
        for i, req in pending.items():
            part, start = sols[start : start + len(req)], start + len(req)
            try:
                nxt[i] = plans[i].send(part)
            except StopIteration as stop:
                results[i] = stop.value
        pending = nxt
    return [r for r in results if r is not None]
