"""Batched L-BFGS: many independent smooth problems minimised side by side, one evaluation per step.

Every problem keeps its own history, step length, line search and stopping flag. The loop is
asynchronous: one call of the objective evaluates each live problem at its own trial point; a
problem whose trial passes the Armijo test moves there and takes a new L-BFGS direction, one whose
trial fails shrinks its step (safeguarded quadratic interpolation). No problem waits for
another's line search.

Directions use the compact representation of the inverse BFGS matrix (Byrd, Nocedal & Schnabel,
1994), the form scipy's L-BFGS-B uses: two batched products with the stored pairs and two tiny
(H, H) solves per problem, instead of the two-loop recursion's 4H vector operations. Each
problem's pairs live in a ring buffer; slot timestamps give the time order the formula needs.
Finished problems are dropped from the working set once they make up a quarter of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

# Armijo constant of the sufficient-decrease test (the value scipy's L-BFGS-B uses as ftol).
ARMIJO_C1 = 1e-3
# History pairs kept per problem (scipy's default maxcor, used by scikit-learn).
HISTORY = 10
# Failed trial points a line search may take before it gives up (scikit-learn passes maxls=50).
MAX_BACKTRACKS = 50
# Relative decrease below which progress has stalled (scikit-learn passes ftol=64*eps to scipy).
STALL_FACTOR = 64.0
# The working set is compacted once finished problems make up this fraction of it.
COMPACT_DEAD_FRACTION = 0.25

Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``fun(x, ids) -> (f, g)``: points x (n, N) of problems ids (n,); values f (n,), gradients g (n, N)."""

Stopper = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``stop(g, ids) -> (n,) bool``: whether problems ids with gradients g (n, N) have converged."""


@dataclass(frozen=True)
class LbfgsResult:
    """Final state of every problem of one batched minimisation."""

    # (P, N) minimisers.
    x: torch.Tensor
    # (P,) objective values at x.
    f: torch.Tensor
    # (P,) accepted iterations per problem.
    n_iter: torch.Tensor
    # (P,) True where the stopping test passed (False: max_iter reached or the line search stalled).
    converged: torch.Tensor


@dataclass
class _Work:
    """Per-problem tensors of the working set, all indexed by working row on dim 0."""

    ids: torch.Tensor  # (n,) problem indices
    x: torch.Tensor  # (n, N) iterates
    f: torch.Tensor  # (n,) objective at x
    g: torch.Tensor  # (n, N) gradient at x
    d: torch.Tensor  # (n, N) search directions
    gd: torch.Tensor  # (n,) directional derivative g·d
    step: torch.Tensor  # (n,) trial step along d
    pairs: torch.Tensor  # (n, 2H, N) ring buffer: steps s in [:H], gradient changes y in [H:]
    stamp: torch.Tensor  # (n, H) int64 insertion time of each slot, -1 when empty
    sty: torch.Tensor  # (n, H, H) s_i·y_j
    yty: torch.Tensor  # (n, H, H) y_i·y_j
    clock: torch.Tensor  # (n,) int64 pairs inserted so far
    n_iter: torch.Tensor  # (n,) int64 accepted iterations
    backtracks: torch.Tensor  # (n,) int64 failed trials of the current line search
    alive: torch.Tensor  # (n,) bool still iterating

    def keep(self, rows: torch.Tensor) -> _Work:
        return _Work(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


def minimize_lbfgs(
    fun: Objective, x0: torch.Tensor, *, stop: Stopper, max_iter: int, live: torch.Tensor | None = None
) -> LbfgsResult:
    """Minimise P independent objectives with per-problem L-BFGS.

    Args:
        fun: the batched objective (see :data:`Objective`).
        x0: (P, N) starting points.
        stop: the per-problem stopping test (see :data:`Stopper`), applied at every accepted point.
        max_iter: iterations after which a problem stops unconverged.
        live: (P,) problems to solve; the others (padding) stay at x0, unconverged.

    Returns:
        The final iterates, values, iteration counts and convergence flags of all P problems.
    """
    P, dev, dt = x0.shape[0], x0.device, x0.dtype
    out = LbfgsResult(
        x=x0.clone(),
        f=torch.zeros(P, dtype=dt, device=dev),
        n_iter=torch.zeros(P, dtype=torch.long, device=dev),
        converged=torch.zeros(P, dtype=torch.bool, device=dev),
    )
    ids = torch.arange(P, device=dev) if live is None else live.nonzero().squeeze(1)
    if ids.numel() == 0:
        return out
    w = _start(fun, x0[ids], ids)
    done = stop(w.g, ids)
    _finish(w, out, done, done)
    while True:
        n_dead = int((~w.alive).sum())  # the loop's one host sync for "all done?" and "compact?"
        if n_dead == w.alive.numel():
            return out
        if n_dead >= COMPACT_DEAD_FRACTION * w.alive.numel():
            w = w.keep(w.alive.nonzero().squeeze(1))
        _step(w, out, fun, stop, max_iter)


def _start(fun: Objective, x: torch.Tensor, ids: torch.Tensor) -> _Work:
    """The working set at the starting points x (n, N): steepest descent, empty histories."""
    (n, N), dt, dev = x.shape, x.dtype, x.device
    f, g = fun(x, ids)
    return _Work(
        ids=ids,
        x=x,
        f=f,
        g=g,
        d=-g,
        gd=-(g * g).sum(1),
        step=_first_step(g),
        pairs=torch.zeros(n, 2 * HISTORY, N, dtype=dt, device=dev),
        stamp=torch.full((n, HISTORY), -1, dtype=torch.long, device=dev),
        sty=torch.zeros(n, HISTORY, HISTORY, dtype=dt, device=dev),
        yty=torch.zeros(n, HISTORY, HISTORY, dtype=dt, device=dev),
        clock=torch.zeros(n, dtype=torch.long, device=dev),
        n_iter=torch.zeros(n, dtype=torch.long, device=dev),
        backtracks=torch.zeros(n, dtype=torch.long, device=dev),
        alive=torch.ones(n, dtype=torch.bool, device=dev),
    )


def _first_step(g: torch.Tensor) -> torch.Tensor:
    """scipy's first step: unit length along the gradient (at most 1)."""
    return torch.clamp((g * g).sum(1).rsqrt(), max=1.0).nan_to_num(nan=1.0, posinf=1.0)


def _finish(w: _Work, out: LbfgsResult, rows: torch.Tensor, converged: torch.Tensor) -> None:
    """Record problems at rows (bool mask) as finished (none: nothing changes)."""
    idx = rows.nonzero().squeeze(1)
    if idx.numel() == 0:
        return
    pid = w.ids[idx]
    out.x[pid] = w.x[idx]
    out.f[pid] = w.f[idx]
    out.n_iter[pid] = w.n_iter[idx]
    out.converged[pid] = converged[idx]
    w.alive[idx] = False


def _step(w: _Work, out: LbfgsResult, fun: Objective, stop: Stopper, max_iter: int) -> None:
    """One evaluation for every live problem, then accept or backtrack each."""
    xt = torch.addcmul(w.x, w.step[:, None], w.d)
    ft, gt = _evaluate_alive(fun, xt, w)
    ok = w.alive & torch.isfinite(ft) & (ft <= w.f + ARMIJO_C1 * w.step * w.gd)
    bad = w.alive & ~ok
    s, y = xt - w.x, gt - w.g
    scale = torch.clamp(torch.maximum(w.f.abs(), ft.abs()), min=1.0)
    stalled = (w.f - ft) <= STALL_FACTOR * torch.finfo(ft.dtype).eps * scale
    # Backtracking: minimiser of the quadratic through f(0), f'(0), f(step), kept in [0.1, 0.5] step.
    denom = 2.0 * (ft - w.f - w.gd * w.step)
    quad = -w.gd * w.step * w.step / denom
    quad = torch.where(torch.isfinite(quad) & (denom > 0), quad, 0.1 * w.step)
    shrunk = torch.minimum(torch.maximum(quad, 0.1 * w.step), 0.5 * w.step)
    # Accepted rows move to their trial point, the others stay (a select: no host sync).
    xt, gt = torch.where(ok[:, None], xt, w.x), torch.where(ok[:, None], gt, w.g)
    w.x, w.g, w.f = xt, gt, torch.where(ok, ft, w.f)
    w.n_iter += ok
    ab = _insert_pairs(w, ok, s, y)
    conv = torch.zeros_like(ok)
    acc = ok.nonzero().squeeze(1)
    conv[acc] = stop(gt[acc], w.ids[acc])
    w.backtracks = torch.where(bad, w.backtracks + 1, torch.zeros_like(w.backtracks))
    spent = bad & (w.backtracks >= MAX_BACKTRACKS)
    has_pairs = (w.stamp >= 0).any(1)
    # A stalled quasi-Newton direction gets another chance as steepest descent; a stalled gradient
    # step means no decrease is measurable any more, so the problem stops there.
    finished = (ok & (conv | stalled | (w.n_iter >= max_iter))) | (spent & ~has_pairs)
    _next_directions(w, ab, fresh=ok & ~finished, bad=bad, shrunk=shrunk, reset=spent & has_pairs)
    _finish(w, out, finished, conv)


def _next_directions(
    w: _Work, ab: torch.Tensor, *, fresh: torch.Tensor, bad: torch.Tensor, shrunk: torch.Tensor, reset: torch.Tensor
) -> None:
    """New L-BFGS directions (step 1) for ``fresh`` rows, shorter steps for ``bad`` ones, restarts."""
    d = _direction(w, ab)
    gd = torch.linalg.vecdot(w.g, d)
    restart = reset | (fresh & ~(gd < 0))
    w.d = torch.where(fresh[:, None], d, w.d)
    w.gd = torch.where(fresh, gd, w.gd)
    w.step = torch.where(fresh, torch.ones_like(w.step), torch.where(bad, shrunk, w.step))
    r = restart.nonzero().squeeze(1)
    if r.numel():
        w.stamp[r] = -1
        w.d[r] = -w.g[r]
        w.gd[r] = -torch.linalg.vecdot(w.g[r], w.g[r])
        w.step[r] = _first_step(w.g[r])
        w.backtracks[r] = 0


def _evaluate_alive(fun: Objective, xt: torch.Tensor, w: _Work) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective at the trial points of live rows (finished rows get f = inf, g = 0)."""
    rows = w.alive.nonzero().squeeze(1)
    if rows.numel() == w.alive.numel():
        return fun(xt, w.ids)
    f, g = fun(xt[rows], w.ids[rows])
    ft = torch.full_like(w.f, torch.inf)
    gt = torch.zeros_like(w.g)
    ft[rows], gt[rows] = f, g
    return ft, gt


def _insert_pairs(w: _Work, ok: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Store (s, y) of accepted problems with positive curvature, update the s·y and y·y tables.

    Returns:
        (n, 2H) [S; Y] @ g for the (already updated) gradients, for :func:`_direction`.
    """
    sy, yy = torch.linalg.vecdot(s, y), torch.linalg.vecdot(y, y)
    # Pairs without positive curvature (flat directions such as a shared intercept shift) would
    # break the inverse-Hessian model; they are skipped, as scipy does.
    upd = ok & (sy > torch.finfo(s.dtype).eps * yy)
    rows = upd.nonzero().squeeze(1)
    slot = w.clock[rows] % HISTORY
    w.pairs[rows, slot] = s[rows]
    w.pairs[rows, HISTORY + slot] = y[rows]
    w.stamp[rows, slot] = w.clock[rows]
    w.clock[rows] += 1
    # One pass over all stored pairs gives the new table entries and the direction's S·g, Y·g. The
    # product is taken as (3, N) @ (N, 2H): with three columns on the other side, BLAS batched GEMM is
    # about twice as fast in this orientation (measured on 2 CPU cores, 450 problems of 3288).
    prod = torch.bmm(torch.stack([s, y, w.g], dim=1), w.pairs.transpose(1, 2)).transpose(1, 2)
    s_dot, y_dot = prod[rows, :HISTORY], prod[rows, HISTORY:]  # (r, H, 3): [.·s, .·y, .·g]
    w.sty[rows, :, slot] = s_dot[:, :, 1]  # s_i · y_new
    w.sty[rows, slot, :] = y_dot[:, :, 0]  # s_new · y_j
    w.yty[rows, :, slot] = y_dot[:, :, 1]
    w.yty[rows, slot, :] = y_dot[:, :, 1]
    return prod[:, :, 2]


def _direction(w: _Work, ab: torch.Tensor) -> torch.Tensor:
    """-H g for every working row, H the compact inverse BFGS matrix with H0 = gamma * I.

    Args:
        w: the working set (pairs, tables, gradients).
        ab: (n, 2H) [S; Y] @ g.
    """
    valid = w.stamp >= 0
    both = valid[:, :, None] & valid[:, None, :]
    eye = torch.eye(HISTORY, dtype=w.g.dtype, device=w.g.device)
    # R: s_i·y_j for pairs with i inserted no later than j (upper triangular in time order);
    # empty slots get a unit diagonal and no coupling, so they contribute nothing.
    earlier = both & (w.stamp[:, :, None] <= w.stamp[:, None, :])
    R = torch.where(earlier, w.sty, torch.zeros_like(w.sty)) + torch.diag_embed((~valid).to(w.g.dtype))
    D = torch.diagonal(w.sty, dim1=1, dim2=2) * valid
    yty = torch.where(both, w.yty, torch.zeros_like(w.yty))
    newest = w.stamp.argmax(1, keepdim=True)
    sy_new = D.gather(1, newest).squeeze(1)
    yy_new = torch.diagonal(yty, dim1=1, dim2=2).gather(1, newest).squeeze(1)
    gamma = torch.where(valid.any(1) & (yy_new > 0), sy_new / yy_new.clamp(min=torch.finfo(eye.dtype).tiny), 1.0)
    ab = ab * valid.repeat(1, 2)
    a, b = ab[:, :HISTORY], ab[:, HISTORY:]
    u = torch.linalg.solve(R, a)
    rhs = D * u + gamma[:, None] * (torch.bmm(yty, u[:, :, None]).squeeze(2) - b)
    p1 = torch.linalg.solve(R.transpose(1, 2), rhs)
    coeffs = torch.cat([-p1, gamma[:, None] * u], dim=1)
    # (1, 2H) @ (2H, N) per row: a row vector times the pairs (the faster orientation, as above).
    return torch.baddbmm((-gamma)[:, None, None] * w.g[:, None, :], coeffs[:, None, :], w.pairs).squeeze(1)
