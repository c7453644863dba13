"""Batched L-BFGS: many independent smooth problems minimised side by side, one evaluation per step.

Every problem keeps its own history, step length, line search and stopping flag. The loop is
asynchronous: one call of the objective evaluates each live problem at its own trial point, after
which a problem whose trial point passes the Armijo test moves there and takes a new L-BFGS
direction, and a problem whose trial point fails shrinks its step. No problem waits for another's
line search, so the objective (a batched GEMM) is never called for a single straggler's sake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# Armijo constant of the sufficient-decrease test (the value scipy's L-BFGS-B uses as ftol).
ARMIJO_C1 = 1e-3
# History pairs kept per problem (scipy's default maxcor, used by scikit-learn).
HISTORY = 10
# Failed trial points a line search may take before it gives up (scikit-learn passes maxls=50).
MAX_BACKTRACKS = 50
# Relative decrease below which progress has stalled (scikit-learn passes ftol=64*eps to scipy).
STALL_FACTOR = 64.0

Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``fun(x, live) -> (f, g)``: x (P, N) points, live (P,) bool; returns f (P,) and g (P, N).

Rows where ``live`` is False may hold anything; the objective may skip computing them.
"""

Stopper = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``stop(g, idx) -> (len(idx),) bool``: whether the problems ``idx`` with gradients g are converged."""


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
class _State:
    """Mutable per-problem tensors of the loop (all indexed by problem on dim 0, history on dim 1)."""

    x: torch.Tensor  # (P, N) current iterates
    f: torch.Tensor  # (P,) objective at x
    g: torch.Tensor  # (P, N) gradient at x
    d: torch.Tensor  # (P, N) search directions
    gd: torch.Tensor  # (P,) directional derivative g·d
    step: torch.Tensor  # (P,) trial step along d
    s: torch.Tensor  # (P, H, N) past steps (ring buffer)
    y: torch.Tensor  # (P, H, N) past gradient changes
    rho: torch.Tensor  # (P, H) 1 / (s·y); 0 marks an empty slot
    slot: torch.Tensor  # (P,) int64 next ring slot to write
    n_iter: torch.Tensor  # (P,) int64 accepted iterations
    backtracks: torch.Tensor  # (P,) int64 failed trials in the current line search
    live: torch.Tensor  # (P,) bool still iterating
    converged: torch.Tensor  # (P,) bool stopping test passed


def minimize_lbfgs(
    fun: Objective, x0: torch.Tensor, *, stop: Stopper, max_iter: int, live: torch.Tensor | None = None
) -> LbfgsResult:
    """Minimise P independent objectives with per-problem L-BFGS.

    Args:
        fun: the batched objective (see :data:`Objective`).
        x0: (P, N) starting points.
        stop: the per-problem stopping test (see :data:`Stopper`), applied at every accepted point.
        max_iter: iterations after which a problem stops unconverged.
        live: (P,) problems to solve; the others (padding) are left at x0 and reported unconverged.

    Returns:
        The final iterates, values, iteration counts and convergence flags.
    """
    P, N = x0.shape
    dev = x0.device
    live = torch.ones(P, dtype=torch.bool, device=dev) if live is None else live.clone()
    f, g = fun(x0, live)
    st = _State(
        x=x0.clone(),
        f=f,
        g=g,
        d=-g,
        gd=-(g * g).sum(1),
        step=torch.zeros(P, dtype=x0.dtype, device=dev),
        s=torch.zeros(P, HISTORY, N, dtype=x0.dtype, device=dev),
        y=torch.zeros(P, HISTORY, N, dtype=x0.dtype, device=dev),
        rho=torch.zeros(P, HISTORY, dtype=x0.dtype, device=dev),
        slot=torch.zeros(P, dtype=torch.long, device=dev),
        n_iter=torch.zeros(P, dtype=torch.long, device=dev),
        backtracks=torch.zeros(P, dtype=torch.long, device=dev),
        live=live,
        converged=torch.zeros(P, dtype=torch.bool, device=dev),
    )
    idx = live.nonzero().squeeze(1)
    done = stop(g[idx], idx)
    st.converged[idx] = done
    st.live[idx[done]] = False
    if max_iter < 1:
        st.live[:] = False
    _restart(st, st.live.nonzero().squeeze(1))
    while bool(st.live.any()):
        xt = st.x + st.step[:, None] * st.d
        ft, gt = fun(xt, st.live)
        ok = st.live & torch.isfinite(ft) & (ft <= st.f + ARMIJO_C1 * st.step * st.gd)
        bad = st.live & ~ok
        if bool(ok.any()):
            _accept(st, ok.nonzero().squeeze(1), xt, ft, gt, stop, max_iter)
        if bool(bad.any()):
            _backtrack(st, bad.nonzero().squeeze(1), ft)
    return LbfgsResult(x=st.x, f=st.f, n_iter=st.n_iter, converged=st.converged)


def _restart(st: _State, idx: torch.Tensor) -> None:
    """Forget the history of problems ``idx`` and point them down their gradient (first step 1/|g|)."""
    st.rho[idx] = 0.0
    g = st.g[idx]
    gg = (g * g).sum(1)
    st.d[idx] = -g
    st.gd[idx] = -gg
    # scipy's first step has length one along the gradient, which scales it to the data.
    st.step[idx] = torch.clamp(gg.rsqrt(), max=1.0).nan_to_num(nan=1.0, posinf=1.0)
    st.backtracks[idx] = 0


def _accept(
    st: _State, idx: torch.Tensor, xt: torch.Tensor, ft: torch.Tensor, gt: torch.Tensor, stop: Stopper, max_iter: int
) -> None:
    """Move problems ``idx`` to their trial points, update their history and pick new directions."""
    s = xt[idx] - st.x[idx]
    y = gt[idx] - st.g[idx]
    sy = (s * y).sum(1)
    yy = (y * y).sum(1)
    # A pair with no positive curvature (flat directions such as a shared intercept shift) would
    # break the inverse-Hessian model; it is skipped, as scipy does.
    keep = sy > torch.finfo(s.dtype).eps * yy
    ki, slot = idx[keep], st.slot[idx[keep]]
    st.s[ki, slot] = s[keep]
    st.y[ki, slot] = y[keep]
    st.rho[ki, slot] = 1.0 / sy[keep]
    st.slot[ki] = (slot + 1) % HISTORY
    f_old = st.f[idx]
    st.x[idx] = xt[idx]
    st.f[idx] = ft[idx]
    st.g[idx] = gt[idx]
    st.n_iter[idx] += 1
    st.backtracks[idx] = 0
    conv = stop(gt[idx], idx)
    st.converged[idx] = conv
    scale = torch.maximum(torch.maximum(f_old.abs(), ft[idx].abs()), torch.ones_like(f_old))
    stalled = (f_old - ft[idx]) <= STALL_FACTOR * torch.finfo(s.dtype).eps * scale
    finished = conv | stalled | (st.n_iter[idx] >= max_iter)
    st.live[idx[finished]] = False
    go = idx[~finished]
    if go.numel():
        _new_direction(st, go)


def _new_direction(st: _State, idx: torch.Tensor) -> None:
    """Two-loop recursion for problems ``idx`` (newest pair first), step 1 along the result."""
    q = -st.g[idx]
    s, y, rho = st.s[idx], st.y[idx], st.rho[idx]
    order = [(st.slot[idx] - 1 - j) % HISTORY for j in range(HISTORY)]
    rows = torch.arange(idx.numel(), device=q.device)
    alphas = []
    for k in order:
        a = rho[rows, k] * (s[rows, k] * q).sum(1)
        q -= a[:, None] * y[rows, k]
        alphas.append(a)
    newest = order[0]
    yy = (y[rows, newest] ** 2).sum(1)
    # Initial inverse Hessian gamma*I with gamma = s·y / y·y of the newest pair (1 without history).
    gamma = torch.where((rho[rows, newest] > 0) & (yy > 0), 1.0 / (rho[rows, newest] * yy), torch.ones_like(yy))
    q *= gamma[:, None]
    for k, a in zip(reversed(order), reversed(alphas), strict=True):
        b = rho[rows, k] * (y[rows, k] * q).sum(1)
        q += (a - b)[:, None] * s[rows, k]
    gd = (st.g[idx] * q).sum(1)
    st.d[idx] = q
    st.gd[idx] = gd
    st.step[idx] = 1.0
    uphill = ~(gd < 0)
    if bool(uphill.any()):
        _restart(st, idx[uphill])


def _backtrack(st: _State, idx: torch.Tensor, ft: torch.Tensor) -> None:
    """Shrink the steps of problems ``idx`` whose trial failed (safeguarded quadratic interpolation)."""
    step, f0, gd, f1 = st.step[idx], st.f[idx], st.gd[idx], ft[idx]
    # Minimiser of the quadratic through f(0), f'(0) and f(step), kept inside [0.1, 0.5] * step.
    denom = 2.0 * (f1 - f0 - gd * step)
    quad = -gd * step * step / denom
    new = torch.where(torch.isfinite(quad) & (denom > 0), quad, 0.1 * step)
    st.step[idx] = torch.minimum(torch.maximum(new, 0.1 * step), 0.5 * step)
    st.backtracks[idx] += 1
    spent = st.backtracks[idx] >= MAX_BACKTRACKS
    if bool(spent.any()):
        sp = idx[spent]
        has_history = (st.rho[sp] > 0).any(1)
        # A stalled quasi-Newton direction gets one more chance as steepest descent; a stalled
        # gradient step means no decrease is measurable any more, so the problem stops there.
        st.live[sp[~has_history]] = False
        _restart(st, sp[has_history])
