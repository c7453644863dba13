"""One chunk of logistic-regression problems packed into padded tensors: objective, stopping test, unpacking.

Layout: G groups (shared design matrices), each with up to Q problems (one per C or label set), K
score columns per problem. A problem's parameters are (r + 1, K): r weight rows (features, or
row-space coordinates) and one intercept row, flattened to P = G * Q rows of N = (r + 1) * K.

Each problem's softmax runs over its K columns plus one *extra* column: a constant 0 logit for
binary problems (the smaller class, scikit-learn's sigmoid form), or -inf for multinomial ones.
Unused columns and padding problems are masked; padding rows have weight 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from probe.heads._lbfgs import Stopper

# Design matrices are re-packed without finished groups once at most this fraction is still needed
# (a re-pack costs about one pass over them, as does every evaluation).
COMPACT_RATIO = 0.8
# A row-space problem's exact feature-space gradient check runs once its predicted max-norm is
# within this factor of the tolerance.
CHECK_SLACK = 2.0
# With fewer score columns than this (all problems of a group, Q * K), the two design-matrix
# products run transposed, (Q*K, r) @ (r, m) and (Q*K, m) @ (m, r): CPU batched GEMM takes 2-5x
# longer for ``Z.T @ R`` with 2-15 columns than for ``R.T @ Z`` (measured on 2 cores; from 16 on the
# plain orientation is as fast or faster).
NARROW_COLUMNS = 16


@dataclass(frozen=True)
class GroupData:
    """A group's design matrix and its problems' labels (tensors on the solving device)."""

    # (m, r) standardised rows, or their row-space coordinates R.T when ``reflectors`` is set; its
    # dtype is the one the products run in.
    z: torch.Tensor
    # Householder reflectors (d, r) and their scales (r,) from ``torch.geqrf(Xs.T)``: they hold
    # the orthonormal row-space basis V (W = V @ B) without forming it; None for feature space.
    reflectors: tuple[torch.Tensor, torch.Tensor] | None
    # (d,) float64 standardisation mean (zeros when not standardising).
    mean: torch.Tensor
    # (d,) float64 standardisation scale (ones when not standardising).
    scale: torch.Tensor
    # (m,) float64 sample weights.
    weight: torch.Tensor
    # Per problem: (m,) int64 class indices.
    labels: list[np.ndarray]
    # Per problem: C.
    Cs: list[float]
    # Per problem: its own gradient tolerance, or None for the solve's.
    tols: list[float | None] = field(default_factory=list)


def to_features(data: GroupData, B: torch.Tensor) -> torch.Tensor:
    """Feature-space weights ``V @ B`` (d, k) of row-space coordinates B (r, k); B itself otherwise."""
    if data.reflectors is None:
        return B
    a, tau = data.reflectors
    padded = torch.zeros(a.shape[0], B.shape[1], dtype=a.dtype, device=a.device)
    padded[: B.shape[0]] = B
    return torch.ormqr(a, tau, padded, left=True, transpose=False)


def to_coordinates(data: GroupData, W: torch.Tensor) -> torch.Tensor:
    """Row-space coordinates ``V.T @ W`` (r, k) of feature-space weights W (d, k); W itself otherwise."""
    if data.reflectors is None:
        return W
    a, tau = data.reflectors
    return torch.ormqr(a, tau, W.contiguous(), left=True, transpose=True)[: data.z.shape[1]]


def _encode(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Present classes, per-row score column (-1: the binary reference class), binary flag."""
    present = np.unique(y)
    if present.size == 2:
        return present, np.where(y == present[1], 0, -1), True
    return present, np.searchsorted(present, y), False


class ChunkObjective:
    """The batched objective ``fun(x, ids) -> (f, g)`` of one chunk (see :mod:`probe.heads._lbfgs`)."""

    def __init__(self, data: list[GroupData]) -> None:
        dev, dtype = data[0].z.device, data[0].z.dtype
        G = len(data)
        self.Q = Q = max(len(g.Cs) for g in data)
        m = max(g.z.shape[0] for g in data)
        self.r = r = max(g.z.shape[1] for g in data)
        encoded = [[_encode(y) for y in g.labels] for g in data]
        self.classes = [[e[0] for e in enc] for enc in encoded]
        self.K = K = max(e[0].size - int(e[2]) for enc in encoded for e in enc)
        self.z = torch.zeros(G, m, r, dtype=dtype, device=dev)
        self.weight = torch.zeros(G, m, dtype=torch.float64, device=dev)
        ycol = np.zeros((G, m, Q), dtype=np.int64)
        cols = np.zeros((G, Q, K), dtype=bool)
        cols[:, :, 0] = True  # padding problems act as harmless one-column problems
        extra = np.zeros((G, Q))
        Cs = np.ones((G, Q))
        live = np.zeros((G, Q), dtype=bool)
        for gi, (g, enc) in enumerate(zip(data, encoded, strict=True)):
            mg, rg = g.z.shape
            self.z[gi, :mg, :rg] = g.z
            self.weight[gi, :mg] = g.weight
            for qi, (present, col, binary) in enumerate(enc):
                ycol[gi, :mg, qi] = np.where(col < 0, K, col)
                cols[gi, qi, : present.size - int(binary)] = True
                extra[gi, qi] = 0.0 if binary else -np.inf
                Cs[gi, qi] = g.Cs[qi]
                live[gi, qi] = True
        self.ycol = torch.from_numpy(ycol).to(dev)
        self.cols = torch.from_numpy(cols).to(dev)
        self.extra = torch.from_numpy(extra).to(dev)
        self.C = torch.from_numpy(Cs).to(dev)
        self.live = torch.from_numpy(live.reshape(-1)).to(dev)
        self._zsel = torch.arange(G, device=dev)
        self._z, self._weight = self.z, self.weight
        self._layout_for: torch.Tensor | None = None
        self._layout: tuple[torch.Tensor, ...] = ()

    def x0(self) -> torch.Tensor:
        """(P, N) zero starting point (scikit-learn's)."""
        G = self.z.shape[0]
        return torch.zeros(G * self.Q, (self.r + 1) * self.K, dtype=torch.float64, device=self.z.device)

    def __call__(self, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if ids is not self._layout_for:
            self._pack(ids)
        rows, slot, ycol, cols, extra, C = self._layout
        shape = (self._z.shape[0], cols.shape[1], self.r + 1, self.K)
        if shape[0] * shape[1] == ids.numel():  # every slot taken, in order: no copies
            f, g = self._evaluate(x.view(shape), self._z, self._weight, ycol, cols, extra, C)
            return f.reshape(-1), g.reshape(ids.numel(), -1)
        xv = torch.zeros(shape, dtype=x.dtype, device=x.device)
        xv[rows, slot] = x.view(-1, self.r + 1, self.K)
        f, g = self._evaluate(xv, self._z, self._weight, ycol, cols, extra, C)
        return f[rows, slot], g[rows, slot].reshape(ids.numel(), -1)

    def _pack(self, ids: torch.Tensor) -> None:
        """Lay out the working problems ids (ascending) as (groups, slots): finished problems leave.

        The design matrices are re-packed once half their groups are finished; the per-problem
        tensors (labels, columns, C) every time, so a group evaluates only its working problems.
        """
        gid, qid = ids // self.Q, ids % self.Q
        needed = torch.unique(gid)
        if needed.numel() <= COMPACT_RATIO * self._zsel.numel():
            self._zsel, self._z, self._weight = needed, self.z[needed], self.weight[needed]
        G = self._zsel.numel()
        pos = torch.full((self.z.shape[0],), -1, dtype=torch.long, device=ids.device)
        pos[self._zsel] = torch.arange(G, device=ids.device)
        rows = pos[gid]
        counts = torch.bincount(rows, minlength=G)
        slot = torch.arange(ids.numel(), device=ids.device) - (torch.cumsum(counts, 0) - counts)[rows]
        # Empty slots borrow problem 0 of their group (every group has one); their output is unused.
        qmap = torch.zeros(G, int(counts.max()), dtype=torch.long, device=ids.device)
        qmap[rows, slot] = qid
        zs = self._zsel
        m = self.ycol.shape[1]
        self._layout = (
            rows,
            slot,
            self.ycol[zs].gather(2, qmap[:, None, :].expand(G, m, -1)),
            self.cols[zs].gather(1, qmap[:, :, None].expand(-1, -1, self.K)),
            self.extra[zs].gather(1, qmap),
            self.C[zs].gather(1, qmap),
        )
        self._layout_for = ids

    def _evaluate(
        self,
        xv: torch.Tensor,
        z: torch.Tensor,
        weight: torch.Tensor,
        ycol: torch.Tensor,
        cols: torch.Tensor,
        extra: torch.Tensor,
        C: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective and gradient of the packed groups; xv (g, Q, r + 1, K) -> (g, Q), (g, Q, r + 1, K).

        Only the two products run in the design matrix's dtype (float32 on CUDA); the softmax, the
        sums and the gradient are float64, so the objective stays accurate enough for the line
        search near the optimum even at tiny C. The cross-entropy is ``(max - picked) + log1p(sum of the other
        exp(logit - max))`` and the true class's residual is minus the other probabilities, which
        keeps both accurate when a fit is nearly separable (a plain ``lse - picked`` or ``p - 1``
        cancels to noise there).
        """
        G, m, r = z.shape
        Q, K, dt = xv.shape[1], self.K, z.dtype
        W = xv[:, :, :r, :]
        Wg = W.permute(0, 2, 1, 3).reshape(G, r, Q * K).to(dt)
        b = xv[:, :, r, :].reshape(G, 1, Q * K).to(dt)
        narrow = Q * K < NARROW_COLUMNS
        if narrow:
            lin = torch.baddbmm(b.transpose(1, 2), Wg.transpose(1, 2), z.transpose(1, 2)).transpose(1, 2)
        else:
            lin = torch.baddbmm(b, z, Wg)
        lin = lin.to(torch.float64, memory_format=torch.contiguous_format)
        logits = lin.view(G, m, Q, K).masked_fill(~cols[:, None], -torch.inf)
        full = torch.cat([logits, extra[:, None, :, None].expand(G, m, Q, 1)], dim=3)
        top, arg = full.max(dim=3, keepdim=True)
        e = torch.exp(full - top)
        rest = e.scatter(3, arg, 0.0).sum(3)  # sum over all but the largest logit
        y = ycol[..., None]
        ce = (top.squeeze(3) - full.gather(3, y).squeeze(3)) + torch.log1p(rest)
        f = C * (ce * weight[:, :, None]).sum(1) + 0.5 * (W * W).sum((2, 3))
        p = (e / (1.0 + rest)[..., None]).scatter(3, y, 0.0)
        resid = p.scatter(3, y, -p.sum(3, keepdim=True))[..., :K]
        resid = resid * (weight[:, :, None, None] * C[:, None, :, None])
        rz = resid.reshape(G, m, Q * K).to(dt)
        if narrow:
            gW = torch.bmm(rz.transpose(1, 2), z).view(G, Q, K, r).transpose(2, 3)
        else:
            gW = torch.bmm(z.transpose(1, 2), rz).view(G, r, Q, K).permute(0, 2, 1, 3)
        g = torch.empty_like(xv)
        torch.add(gW, W, out=g[:, :, :r])
        g[:, :, r] = resid.sum(1)
        return f, g.mul_(cols[:, :, None, :])

    def pack(self, coef: np.ndarray, intercept: np.ndarray, gi: int, data: GroupData) -> torch.Tensor:
        """The (N,) parameters of original-space ``coef`` (k, d) and ``intercept`` (k,) in group ``gi``'s
        coordinates (the inverse of :meth:`unpack`; a start point for one of its problems)."""
        k = coef.shape[0]
        W = torch.from_numpy(np.ascontiguousarray(coef.T, dtype=np.float64)).to(data.mean.device) * data.scale[:, None]
        x = torch.zeros(self.r + 1, self.K, dtype=torch.float64, device=W.device)
        B = to_coordinates(data, W)
        x[: B.shape[0], :k] = B
        x[self.r, :k] = (
            torch.from_numpy(np.asarray(intercept, dtype=np.float64)).to(W.device) + (data.mean / data.scale) @ W
        )
        return x.reshape(-1)

    def unpack(self, x: torch.Tensor, gi: int, data: GroupData) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Original-space (k, d) coefficients and (k,) intercepts of group ``gi``'s problems."""
        xv = x.view(-1, self.Q, self.r + 1, self.K)[gi]
        rg = data.z.shape[1]
        k = self.cols[gi].sum(1).tolist()
        B = xv[:, :rg].permute(1, 0, 2).reshape(rg, -1)  # (r_g, Q * K)
        W = to_features(data, B).view(-1, self.Q, self.K)  # (d, Q, K)
        coef = (W / data.scale[:, None, None]).permute(1, 2, 0)  # (Q, K, d)
        intercept = xv[:, self.r] - torch.einsum("d,dqk->qk", data.mean / data.scale, W)
        coef_np, intercept_np = coef.double().cpu().numpy(), intercept.double().cpu().numpy()
        n = len(self.classes[gi])
        return [coef_np[q, : k[q]] for q in range(n)], [intercept_np[q, : k[q]] for q in range(n)]


def make_stopper(obj: ChunkObjective, data: list[GroupData], tol: float) -> Stopper:
    """scikit-learn's test: max |gradient| of objective / (C * sum(w)) <= tol, in feature space (``tol`` per
    problem: its ``GroupData.tols`` entry, else the solve's).

    A row-space gradient g (columns g_k) maps to ``V @ g`` in feature space, which costs as much as
    an evaluation, so it is computed only when the answer is open and likely yes. Always
    ``max_k |g_k| / sqrt(d) <= max |V g| <= max_k |g_k|``; in between, each problem remembers the
    ratio ``max |V g| / max_k |g_k|`` of its last exact check and is checked again once that ratio
    predicts a pass (within CHECK_SLACK). The test is exact whenever it says yes; a ratio that
    drifts can only postpone a stop, never advance it.
    """
    Q, r, K = obj.Q, obj.r, obj.K
    sw = torch.stack([g.weight.sum() for g in data])
    tols = np.full((len(data), Q), float(tol))
    for gi, g in enumerate(data):
        for qi, t in enumerate(g.tols):
            tols[gi, qi] = tol if t is None else t
    limit = (torch.from_numpy(tols).to(obj.C) * obj.C * sw[:, None]).reshape(-1)
    d = data[0].mean.shape[0]
    ratio = torch.full_like(limit, d**-0.5)

    def stop(grad: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        gv = grad.view(-1, r + 1, K)
        lim = limit[ids]
        b_ok = gv[:, r].abs().amax(1) <= lim
        if data[0].reflectors is None:
            return b_ok & (gv[:, :r].abs().amax((1, 2)) <= lim)
        col = gv[:, :r].norm(dim=1).amax(1)
        ok = b_ok & (col <= lim)
        open_ = b_ok & ~ok & (col <= lim * d**0.5) & (col * ratio[ids] <= CHECK_SLACK * lim)
        js = open_.nonzero().squeeze(1)
        groups = ids[js] // Q
        for gi in torch.unique(groups).tolist():
            jg = js[groups == gi]
            rg = data[gi].z.shape[1]
            gw = gv[jg, :rg].permute(1, 0, 2).reshape(rg, -1)  # (r_g, c * K)
            top = to_features(data[gi], gw).abs().view(d, jg.numel(), K).amax((0, 2))
            ok[jg] = top <= lim[jg]
            ratio[ids[jg]] = top / col[jg]
        return ok

    return stop
