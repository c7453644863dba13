"""Batched L2 logistic regression: many problems over subsets of one feature matrix, solved together.

The objective of every problem is scikit-learn's, on features standardised with the mean and
standard deviation of that problem's own rows::

    C * sum_i w_i * CE(softmax(x_i W + b), y_i) + 0.5 * ||W||^2        (b is not penalised)

Problems whose labels hold two classes are solved in scikit-learn's binary form: one coefficient
vector for the larger class against a fixed zero logit for the smaller one (a sigmoid), so the
penalty is that of scikit-learn's single vector and not of two softmax columns. Classes absent from
a problem's labels get no column (as if they did not exist, like scikit-learn fitting on them).

Problems sharing rows and weights form a *group*: they share one design matrix, so the objective
evaluates them with one GEMM. A group whose row count m is small next to the width d is solved
in its row space (representer theorem): with ``Xs.T = V R`` (thin QR, V of shape (d, m) with
orthonormal columns), ``W = V B`` and ``Xs W = R.T B`` with ``||W|| = ||B||``, so the problem on the
(m, m) matrix ``R.T`` is the same problem isometrically, and L-BFGS takes the same steps in it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from probe.errors import ConfigError, DeviceError, HeadError
from probe.heads._lbfgs import HISTORY, minimize_lbfgs
from probe.heads._logistic_chunk import ChunkObjective, GroupData, make_stopper

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
PRECISIONS = ("auto", "float64", "float32")
# Row-space solving pays when a group's rows are this fraction of the feature width or fewer
# (measured on 1280-d BloodMNIST features: 6.5x faster at 0.06 d, 3.3x at 0.16 d, 1.2x at 0.64 d).
ROW_SPACE_MAX_RATIO = 0.75
# A chunk's largest group has at most this many times the rows of its smallest (bounds padding).
BUCKET_RATIO = 1.5


@dataclass(frozen=True, eq=False)
class LinearProblem:
    """One logistic-regression problem on rows of the shared feature matrix."""

    # (m,) int64 indices into the rows of X (repeats allowed; they count as repeated samples).
    rows: np.ndarray
    # (m,) int class indices in [0, n_classes); at least two distinct classes.
    y: np.ndarray
    # Inverse penalty strength (> 0), scikit-learn's C.
    C: float
    # (m,) non-negative sample weights, or None for all ones.
    sample_weight: np.ndarray | None = None
    # A solution of a problem on the same rows and weights (another C) to start from; None: zero.
    init: LinearSolution | None = None
    # This problem's gradient tolerance; None: the solve's ``tol``.
    tol: float | None = None


@dataclass(frozen=True, eq=False)
class LinearSolution:
    """The fitted model of one :class:`LinearProblem`, in the original (unstandardised) feature space.

    Scores are ``X @ coef.T + intercept``: for several classes one column per entry of ``classes``
    (softmax over them); for two classes a single column, the log-odds of ``classes[1]`` against
    ``classes[0]`` (scikit-learn's binary layout).
    """

    # (k,) int64 class indices present in the problem's labels, ascending.
    classes: np.ndarray
    # (k, d) float64, or (1, d) when k == 2; standardisation is folded in.
    coef: np.ndarray
    # (k,) float64, or (1,) when k == 2.
    intercept: np.ndarray
    # scikit-learn's objective C * sum CE + 0.5 * ||W||^2 with W on the standardised features.
    objective: float
    # Accepted L-BFGS iterations.
    n_iter: int
    # Whether the gradient test passed (False: max_iter reached or no further decrease possible).
    converged: bool


@dataclass(frozen=True)
class _Group:
    """Problems that share rows and weights (and so one standardised design matrix)."""

    rows: np.ndarray  # (m,) int64 row indices
    weight: np.ndarray  # (m,) float64 sample weights
    members: tuple[int, ...]  # indices into the problem list
    row_space: bool  # solve in the m-dimensional row space
    n_classes: int  # most classes any member's labels hold


def resolve_device(device: str, *, owner: str = "solve_logistic_batch") -> torch.device:
    """The solver's device through the one policy of :func:`probe.runtime.resolve_device`.

    ``"auto"`` is PyTorch's current CUDA device when it sees one, else the CPU; ``"cuda"`` /
    ``"cuda:N"`` without that device is a DeviceError.
    """
    from probe.runtime import resolve_device as resolve

    try:
        dev = resolve(device, owner=owner)
    except DeviceError:
        raise
    except ConfigError as exc:
        raise HeadError(str(exc)) from None
    if dev.type not in ("cpu", "cuda"):
        raise HeadError(f"{owner}(device={device!r}): the solver runs on the CPU or CUDA; use {owner}(device=cpu)")
    return dev


def check_device(device: str, *, owner: str) -> None:
    """Validate a device string without touching CUDA.

    Raises:
        HeadError: not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    from probe.runtime import parse_device

    try:
        kind, _ = parse_device(device, owner=owner)
    except ConfigError as exc:
        raise HeadError(str(exc)) from None
    if kind == "mps":
        raise HeadError(f"{owner}(device={device!r}): the solver runs on the CPU or CUDA; use {owner}(device=cpu)")


def resolve_precision(precision: str, device: torch.device, *, owner: str = "solve_logistic_batch") -> torch.dtype:
    """``"auto"`` is float64 on CPU (exact agreement) and float32 on CUDA (speed)."""
    if precision not in PRECISIONS:
        raise HeadError(f"{owner}(precision={precision!r}) is unknown; use one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        return torch.float64 if device.type == "cpu" else torch.float32
    return torch.float64 if precision == "float64" else torch.float32


def resolved_backend(device: str, precision: str, *, owner: str) -> tuple[str, str]:
    """(device, dtype) a solve with these settings runs on, e.g. ``("cuda:0", "float32")`` or ``("cpu", "float64")``."""
    dev = resolve_device(device, owner=owner)
    return str(dev), str(resolve_precision(precision, dev, owner=owner)).removeprefix("torch.")


def solve_logistic_batch(
    X: np.ndarray,
    problems: Sequence[LinearProblem],
    *,
    n_classes: int,
    standardize: bool = True,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str = "auto",
    precision: str = "auto",
    batch_memory_mb: int = 1024,
    row_space: bool | None = None,
) -> list[LinearSolution]:
    """Fit many L2 logistic regressions on row subsets of one feature matrix.

    Each problem stops when the max-norm of the gradient of its objective divided by
    ``C * sum(sample_weight)`` (the scale scikit-learn's ``tol`` refers to) is ``<= tol``, or after
    ``max_iter`` iterations. Problems are processed in chunks of at most about ``batch_memory_mb``.
    The two products with the (standardised) design matrix per evaluation run in ``precision``;
    standardisation, the softmax, all sums and the L-BFGS state are float64 in any case.

    Args:
        X: (n, d) features shared by all problems.
        problems: the problems; each names its rows of X, labels and C.
        n_classes: number of class indices labels may take (labels lie in [0, n_classes)).
        standardize: centre and scale each problem's features by its own rows' mean and standard
            deviation (zero-variance features keep scale 1); False fits the raw features.
        max_iter: L-BFGS iterations per problem at most.
        tol: gradient tolerance, scikit-learn's ``tol`` of ``LogisticRegression(solver="lbfgs")``; a
            problem's own ``LinearProblem.tol`` overrides it for that problem.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: dtype of the products: ``"float64"``, ``"float32"`` (TF32 off; about twice as
            fast, objective within ~1e-4 of float64 at tol=1e-4, but fits at tiny C may stop a
            little short of tol), or ``"auto"``: float64 on CPU, float32 on CUDA.
        batch_memory_mb: rough memory budget of one chunk of problems.
        row_space: solve groups in their row space (True), in feature space (False), or where it
            pays (None: rows <= 3/4 of the width).

    Returns:
        One solution per problem, in order.

    Raises:
        HeadError: bad rows, labels, C, sample weights or options.
        DeviceError: ``device="cuda"`` without CUDA.
    """
    X = np.asarray(X)
    if X.ndim != 2 or not np.isfinite(X).all():
        raise HeadError(f"X must be a finite 2-D (n, d) array; got shape {X.shape} or non-finite values.")
    _check_options(n_classes=n_classes, max_iter=max_iter, tol=tol, batch_memory_mb=batch_memory_mb)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    for i, p in enumerate(problems):
        _check_problem(p, i, n_rows=X.shape[0], n_classes=n_classes)
    groups = _make_groups(problems, d=X.shape[1], row_space=row_space)
    x_t = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
    solutions: list[LinearSolution | None] = [None] * len(problems)
    budget = batch_memory_mb * 2**20
    with _no_tf32():
        for chunk in _chunks(groups, d=X.shape[1], itemsize=dtype.itemsize, budget=budget):
            data = [_group_data(x_t, g, problems, standardize=standardize, dtype=dtype) for g in chunk]
            for pi, sol in _solve_chunk(data, chunk, problems, tol=tol, max_iter=max_iter):
                solutions[pi] = sol
    return [s for s in solutions if s is not None]


def _check_options(*, n_classes: int, max_iter: int, tol: float, batch_memory_mb: int) -> None:
    if not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise HeadError(f"n_classes must be an int >= 2; got {n_classes!r}. A probe needs at least two classes.")
    if not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise HeadError(f"max_iter must be an int >= 1; got {max_iter!r}.")
    if not (isinstance(tol, float | int) and np.isfinite(tol) and tol > 0):
        raise HeadError(f"tol must be a finite number > 0; got {tol!r} (scikit-learn's default is 1e-4).")
    if not isinstance(batch_memory_mb, int | np.integer) or batch_memory_mb < 1:
        raise HeadError(f"batch_memory_mb must be an int >= 1; got {batch_memory_mb!r}.")


def _check_problem(p: LinearProblem, i: int, *, n_rows: int, n_classes: int) -> None:
    rows, y = np.asarray(p.rows), np.asarray(p.y)
    if rows.ndim != 1 or rows.size == 0 or rows.dtype.kind not in "iu":
        raise HeadError(f"problem {i}: rows must be a non-empty 1-D integer array; got {rows.dtype} {rows.shape}.")
    if rows.min() < 0 or rows.max() >= n_rows:
        raise HeadError(f"problem {i}: row index {int(rows.max())} is outside X's {n_rows} rows.")
    if y.shape != rows.shape or y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= n_classes:
        raise HeadError(f"problem {i}: y must hold one class index in [0, {n_classes}) per row.")
    if np.unique(y).size < 2:
        raise HeadError(
            f"problem {i}: its labels hold only class {int(y[0])}; a probe needs at least two classes in its rows."
        )
    if not (isinstance(p.C, float | int) and np.isfinite(p.C) and p.C > 0):
        raise HeadError(f"problem {i}: C must be a finite number > 0; got {p.C!r}.")
    if p.tol is not None and not (isinstance(p.tol, float | int) and np.isfinite(p.tol) and p.tol > 0):
        raise HeadError(f"problem {i}: tol must be a finite number > 0 or None; got {p.tol!r}.")
    if p.sample_weight is not None:
        w = np.asarray(p.sample_weight, dtype=np.float64)
        if w.shape != rows.shape or not np.isfinite(w).all() or w.min() < 0 or w.sum() <= 0:
            raise HeadError(f"problem {i}: sample_weight must be (m,) finite, >= 0 and not all zero.")


def _make_groups(problems: Sequence[LinearProblem], *, d: int, row_space: bool | None) -> list[_Group]:
    """Problems with identical rows and weights share a group, ordered by size for tight chunks."""
    members: dict[bytes, list[int]] = {}
    for i, p in enumerate(problems):
        rows = np.asarray(p.rows, dtype=np.int64)
        w = np.ones(rows.size) if p.sample_weight is None else np.asarray(p.sample_weight, dtype=np.float64)
        members.setdefault(rows.tobytes() + b"|" + w.tobytes(), []).append(i)
    groups = []
    for idx in members.values():
        p = problems[idx[0]]
        rows = np.asarray(p.rows, dtype=np.int64)
        w = np.ones(rows.size) if p.sample_weight is None else np.asarray(p.sample_weight, dtype=np.float64)
        use_rs = rows.size <= ROW_SPACE_MAX_RATIO * d if row_space is None else row_space
        k = max(np.unique(problems[i].y).size for i in idx)
        groups.append(_Group(rows=rows, weight=w, members=tuple(idx), row_space=bool(use_rs), n_classes=k))
    groups.sort(key=lambda g: (g.row_space, g.rows.size, len(g.members)))
    return groups


def _chunks(groups: list[_Group], *, d: int, itemsize: int, budget: int) -> list[list[_Group]]:
    """Consecutive groups of one kind and similar size whose padded working set fits the budget."""
    chunks: list[list[_Group]] = []
    for g in groups:
        cur = chunks[-1] if chunks else []
        if (
            not cur
            or cur[0].row_space != g.row_space
            or g.rows.size > BUCKET_RATIO * cur[0].rows.size
            or _chunk_bytes([*cur, g], d, itemsize) > budget
        ):
            chunks.append([g])
        else:
            cur.append(g)
    return chunks


def _chunk_bytes(chunk: list[_Group], d: int, itemsize: int) -> int:
    """Rough peak memory of solving ``chunk`` (groups sorted by size, so the last is the largest)."""
    m = chunk[-1].rows.size
    r = min(m, d) if chunk[0].row_space else d
    q = max(len(g.members) for g in chunk)
    k = max(g.n_classes for g in chunk)
    basis = d * r * 8 if chunk[0].row_space else 0
    # design matrix + basis + logits/probabilities/gradients + float64 L-BFGS history and iterates
    per_group = (m * r + 6 * m * q * (k + 1)) * itemsize + basis + q * (r + 1) * k * (2 * HISTORY + 10) * 8
    return len(chunk) * per_group


def _group_data(
    x_t: torch.Tensor, g: _Group, problems: Sequence[LinearProblem], *, standardize: bool, dtype: torch.dtype
) -> GroupData:
    """Standardise a group's rows and, for row-space groups, factor them (Xs.T = V R), in float64."""
    xs = x_t[torch.from_numpy(g.rows).to(x_t.device)].double()
    d = xs.shape[1]
    if standardize:
        mean = xs.mean(0)
        scale = xs.std(0, correction=0)
        # A constant column (up to rounding) stays unscaled, as in scikit-learn's StandardScaler.
        tiny = 10 * torch.finfo(torch.float64).eps * torch.clamp(mean.abs(), min=1.0)
        scale = torch.where(scale <= tiny, torch.ones_like(scale), scale)
        xs = (xs - mean) / scale
    else:
        mean = torch.zeros(d, dtype=torch.float64, device=xs.device)
        scale = torch.ones(d, dtype=torch.float64, device=xs.device)
    reflectors = None
    if g.row_space:
        # Householder QR without forming Q (forming it would double the cost); V is applied on demand.
        a, tau = torch.geqrf(xs.T)
        r = min(xs.shape)
        reflectors = (a[:, :r], tau[:r])
        xs = torch.triu(a[:r]).T
    return GroupData(
        z=xs.to(dtype).contiguous(),
        reflectors=reflectors,
        mean=mean,
        scale=scale,
        weight=torch.from_numpy(g.weight).to(xs.device),
        labels=[np.asarray(problems[i].y, dtype=np.int64) for i in g.members],
        Cs=[float(problems[i].C) for i in g.members],
        tols=[problems[i].tol for i in g.members],
    )


def _solve_chunk(
    data: list[GroupData], chunk: list[_Group], problems: Sequence[LinearProblem], *, tol: float, max_iter: int
) -> list[tuple[int, LinearSolution]]:
    """Solve every problem of one chunk with one batched L-BFGS run and unpack the solutions."""
    obj = ChunkObjective(data)
    x0 = obj.x0()
    for gi, g in enumerate(chunk):
        for qi, pi in enumerate(g.members):
            init = problems[pi].init
            if init is not None and np.array_equal(init.classes, obj.classes[gi][qi]):
                x0[gi * obj.Q + qi] = obj.pack(init.coef, init.intercept, gi, data[gi])
    res = minimize_lbfgs(obj, x0, stop=make_stopper(obj, data, tol), max_iter=max_iter, live=obj.live)
    out = []
    for gi, g in enumerate(chunk):
        coefs, intercepts = obj.unpack(res.x, gi, data[gi])
        for qi, pi in enumerate(g.members):
            flat = gi * obj.Q + qi
            out.append(
                (
                    pi,
                    LinearSolution(
                        classes=obj.classes[gi][qi],
                        coef=coefs[qi],
                        intercept=intercepts[qi],
                        objective=float(res.f[flat]),
                        n_iter=int(res.n_iter[flat]),
                        converged=bool(res.converged[flat]),
                    ),
                )
            )
    return out


@contextmanager
def _no_tf32() -> Iterator[None]:
    """Keep CUDA matmuls in full float32 (TF32 would cost the 1e-3 agreement with scikit-learn).

    PyTorch >= 2.9 has a new switch (``torch.backends.cuda.matmul.fp32_precision``) beside the
    legacy ``allow_tf32``, and reading the legacy flag after the new one was set raises ("mix of the
    legacy and new APIs"). The new switch is used whenever it exists (reading and setting it never
    raises, and restoring its value restores the legacy flag's too); older PyTorch has only the
    legacy one.
    """
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        saved_precision = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = saved_precision
        return
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32 = saved
