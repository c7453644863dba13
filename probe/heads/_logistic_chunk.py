"""One chunk of logistic-regression problems packed into padded tensors: objective, stopping test, unpacking.

Layout: G groups (shared design matrices), each with up to Q problems (one per C or label set), K
score columns per problem. A problem's parameters are (r + 1, K): r weight rows (features, or
row-space coordinates) and one intercept row, flattened to P = G * Q rows of N = (r + 1) * K.

Each problem's softmax runs over its K columns plus one *extra* column: a constant 0 logit for
binary problems (the smaller class, scikit-learn's sigmoid form), or -inf for multinomial ones.
Unused columns and padding problems are masked; padding rows have weight 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from probe.heads._lbfgs import Stopper

# Groups are re-packed without their finished members once at most this fraction is still live.
COMPACT_RATIO = 0.5


@dataclass(frozen=True)
class GroupData:
    """A group's design matrix and its problems' labels (tensors on the solving device)."""

    # (m, r) standardised rows, or their row-space coordinates R.T when ``basis`` is set.
    z: torch.Tensor
    # (d, r) orthonormal basis of the row space (W = basis @ B), or None for feature space.
    basis: torch.Tensor | None
    # (d,) standardisation mean (zeros when not standardising).
    mean: torch.Tensor
    # (d,) standardisation scale (ones when not standardising).
    scale: torch.Tensor
    # (m,) sample weights.
    weight: torch.Tensor
    # Per problem: (m,) int64 class indices.
    labels: list[np.ndarray]
    # Per problem: C.
    Cs: list[float]


def _encode(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Present classes, per-row column (the extra column K for the binary reference), binary flag."""
    present = np.unique(y)
    if present.size == 2:
        return present, np.where(y == present[1], 0, -1), True
    return present, np.searchsorted(present, y), False


class ChunkObjective:
    """The batched objective ``fun(x, live) -> (f, g)`` of one chunk (see :mod:`probe.heads._lbfgs`)."""

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
        self.weight = torch.zeros(G, m, dtype=dtype, device=dev)
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
        self.extra = torch.from_numpy(extra).to(dev, dtype)
        self.C = torch.from_numpy(Cs).to(dev, dtype)
        self.live = torch.from_numpy(live.reshape(-1)).to(dev)
        self.sel = torch.arange(G, device=dev)
        self._packed = (self.z, self.weight, self.ycol, self.cols, self.extra, self.C)

    def x0(self) -> torch.Tensor:
        """(P, N) zero starting point (scikit-learn's)."""
        G = self.z.shape[0]
        return torch.zeros(G * self.Q, (self.r + 1) * self.K, dtype=self.z.dtype, device=self.z.device)

    def __call__(self, x: torch.Tensor, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        G, Q, r, K = self.z.shape[0], self.Q, self.r, self.K
        glive = live.view(G, Q).any(1)
        if int(glive.sum()) <= COMPACT_RATIO * self.sel.numel():
            self.sel = glive.nonzero().squeeze(1)
            self._packed = tuple(t[self.sel] for t in (self.z, self.weight, self.ycol, self.cols, self.extra, self.C))
        xv = x.view(G, Q, r + 1, K)
        if self.sel.numel() == G:
            f, g = self._evaluate(xv, *self._packed)
            return f.reshape(-1), g.reshape(G * Q, -1)
        f_sel, g_sel = self._evaluate(xv[self.sel], *self._packed)
        f = torch.zeros(G, Q, dtype=x.dtype, device=x.device)
        g = torch.zeros_like(xv)
        f[self.sel] = f_sel
        g[self.sel] = g_sel
        return f.reshape(-1), g.reshape(G * Q, -1)

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
        """Objective and gradient of the packed groups; xv (g, Q, r + 1, K) -> (g, Q), (g, Q, r + 1, K)."""
        G, m, r = z.shape
        Q, K = self.Q, self.K
        W = xv[:, :, :r, :]
        Wg = W.permute(0, 2, 1, 3).reshape(G, r, Q * K)
        b = xv[:, :, r, :].reshape(G, 1, Q * K)
        logits = torch.baddbmm(b, z, Wg).view(G, m, Q, K).masked_fill(~cols[:, None], -torch.inf)
        full = torch.cat([logits, extra[:, None, :, None].expand(G, m, Q, 1)], dim=3)
        lse = torch.logsumexp(full, dim=3)
        picked = full.gather(3, ycol[..., None]).squeeze(3)
        f = C * ((lse - picked) * weight[:, :, None]).sum(1) + 0.5 * (W * W).sum((2, 3))
        resid = torch.exp(full - lse[..., None])
        resid.scatter_add_(3, ycol[..., None], torch.full_like(picked[..., None], -1.0))
        resid = resid[..., :K] * (weight[:, :, None, None] * C[:, None, :, None])
        gW = torch.bmm(z.transpose(1, 2), resid.reshape(G, m, Q * K)).view(G, r, Q, K).permute(0, 2, 1, 3)
        g = torch.cat([gW + W, resid.sum(1)[:, :, None, :]], dim=2)
        return f, g * cols[:, :, None, :]

    def unpack(self, x: torch.Tensor, gi: int, data: GroupData) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Original-space (k, d) coefficients and (k,) intercepts of group ``gi``'s problems."""
        xv = x.view(-1, self.Q, self.r + 1, self.K)[gi]
        rg = data.z.shape[1]
        coefs, intercepts = [], []
        for qi, present in enumerate(self.classes[gi]):
            k = int(self.cols[gi, qi].sum())
            B, b = xv[qi, :rg, :k], xv[qi, self.r, :k]
            W = B if data.basis is None else data.basis @ B
            coef = (W / data.scale[:, None]).T
            intercept = b - (data.mean / data.scale) @ W
            coefs.append(coef.double().cpu().numpy())
            intercepts.append(intercept.double().cpu().numpy())
        return coefs, intercepts


def make_stopper(obj: ChunkObjective, data: list[GroupData], tol: float) -> Stopper:
    """scikit-learn's test: max |gradient| of objective / (C * sum(w)) <= tol, in feature space.

    Row-space gradients are mapped back to feature space (``basis @ g``) only when their column
    norms leave the answer open: max |V g| <= |g| always, and max |V g| >= |g| / sqrt(d).
    """
    Q, r, K = obj.Q, obj.r, obj.K
    sw = torch.stack([g.weight.sum() for g in data])
    limit = (tol * obj.C * sw[:, None]).reshape(-1)

    def stop(grad: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        gv = grad.view(-1, r + 1, K)
        lim = limit[idx]
        b_ok = gv[:, r].abs().amax(1) <= lim
        if data[0].basis is None:
            return b_ok & (gv[:, :r].abs().amax((1, 2)) <= lim)
        col = gv[:, :r].norm(dim=1).amax(1)
        d = data[0].basis.shape[0]
        ok = b_ok & (col <= lim)
        open_ = b_ok & ~ok & (col <= lim * d**0.5)
        for j in open_.nonzero().squeeze(1).tolist():
            g_data = data[int(idx[j]) // Q]
            assert g_data.basis is not None
            rg = g_data.basis.shape[1]
            ok[j] = bool((g_data.basis @ gv[j, :rg]).abs().max() <= lim[j])
        return ok

    return stop
