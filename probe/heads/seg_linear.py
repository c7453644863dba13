"""Linear segmentation probe: per-patch multinomial logistic regression on soft class fractions.

Each patch's target is the class fractions of its pixel block (:func:`patch_targets`), so the fit
is the convex objective

    C * sum_patches sum_c f_pc * (-log softmax(W x_p + b)_c) + 0.5 * ||W||^2

which is scikit-learn's ``LogisticRegression(C=C)`` fitted on one copy of each patch per class with
f_pc > 0, weighted by f_pc. The existing batched solver (:func:`solve_logistic_batch`) runs it on
those weighted copies, many draws (images subsets) and C values in one call
(:func:`fit_seg_linear_batch`), which is what makes label-efficiency curves cheap. Prediction
upsamples the patch logits bilinearly to the mask resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from probe.errors import HeadError
from probe.heads._logistic import LinearProblem, LinearSolution, resolved_backend, solve_logistic_batch
from probe.heads._seg_targets import (
    BATCH_BYTES,
    SegHead,
    check_fitted,
    check_grid,
    check_masks,
    check_patch_features,
    infer_n_classes,
    patch_targets,
    positive,
)

__all__ = ["SegLinearProbe", "fit_seg_linear_batch"]

OWNER = "SegLinearProbe"


class SegLinearProbe(SegHead):
    """Per-patch L2 logistic regression with soft targets; logits upsampled bilinearly to the masks.

    Features are used as given (no standardisation: callers standardise the pool once, e.g. with
    :func:`~probe.heads._seg_targets.pool_statistics`). Classes absent from the training masks get
    no coefficients and a logit of -inf, so they are never predicted. When exactly two classes are
    present the solver's binary layout applies: ``coef_`` is (1, d), the log-odds of
    ``classes_[1]`` against ``classes_[0]`` (scikit-learn's form).

    Args:
        C: inverse penalty strength (> 0), scikit-learn's C.
        max_iter: L-BFGS iterations at most.
        tol: gradient tolerance, scikit-learn's ``tol``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: dtype of the solver's feature products: ``"auto"`` (float64 on CPU, float32 on
            CUDA), ``"float64"`` or ``"float32"``.

    Attributes:
        classes_: (K',) int64 class indices present in the training masks, ascending.
        n_classes_: K, the number of output channels (absent classes included).
        coef_: (K', d) float64, or (1, d) when K' == 2.
        intercept_: (K',) float64, or (1,) when K' == 2.
        n_features_in_: feature width d.
        grid_: (h, w) patch grid seen at ``fit``.
        mask_size_: (H, W) mask resolution seen at ``fit``; the default ``size`` of predictions.
        n_iter_: L-BFGS iterations.
        converged_: whether the fit met ``tol`` within ``max_iter``.
        objective_: final objective value.
        device_: the device the solver ran on (``"cpu"``, ``"cuda:0"``, ...).
        dtype_: the dtype of its feature products (``"float64"`` or ``"float32"``).
    """

    def __init__(
        self,
        *,
        C: float = 1.0,
        max_iter: int = 1000,
        tol: float = 1e-4,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.precision = precision

    def fit(self, X: Any, masks: Any, *, n_classes: int | None = None) -> SegLinearProbe:
        """Fit on the patches of every image.

        Args:
            X: (n, h, w, d) patch features, float16 or float32.
            masks: (n, H, W) integer class maps (255 = ignore), H >= h and W >= w.
            n_classes: K; None takes the largest label + 1 (at least 2).

        Returns:
            self.

        Raises:
            HeadError: invalid parameters or inputs, or fewer than two classes in the masks.
            DeviceError: ``device="cuda"`` without CUDA.
        """
        n = np.asarray(X).shape[0] if np.ndim(X) == 4 else 0
        _fit_into([self], X, masks, [np.arange(n)], n_classes=n_classes, many=False)
        return self

    def _patch_scores(self, X: Any) -> np.ndarray:
        return self.decision_function(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """Per-patch logits.

        Args:
            X: (n, h, w, d) patch features (any grid).

        Returns:
            (n, h, w, K) float32 logits; -inf for classes absent at ``fit``.
        """
        check_fitted(self, "coef_")
        x = check_patch_features(X, owner=OWNER, n_features=self.n_features_in_)
        n, h, w, d = x.shape
        flat = x.reshape(-1, d)
        out = np.full((flat.shape[0], self.n_classes_), -np.inf, np.float32)
        step = max(1, BATCH_BYTES // (8 * d))
        for s in range(0, flat.shape[0], step):
            z = flat[s : s + step].astype(np.float64) @ self.coef_.T + self.intercept_
            if self.classes_.size == 2:
                out[s : s + step, self.classes_[0]] = 0.0
                out[s : s + step, self.classes_[1]] = z[:, 0]
            else:
                out[s : s + step, self.classes_] = z
        return out.reshape(n, h, w, self.n_classes_)

    def predict_patch_proba(self, X: Any) -> np.ndarray:
        """Per-patch class probabilities (softmax of :meth:`decision_function`).

        Args:
            X: (n, h, w, d) patch features.

        Returns:
            (n, h, w, K) float32 probabilities (0 for absent classes).
        """
        z = self.decision_function(X)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def fit_seg_linear_batch(
    X: Any,
    masks: Any,
    draws: Sequence[Any],
    Cs: Sequence[float],
    *,
    n_classes: int,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str = "auto",
    precision: str = "auto",
) -> list[SegLinearProbe]:
    """Fit one :class:`SegLinearProbe` per (draw, C) pair of a shared pool, in one batched solve.

    Probe i equals ``SegLinearProbe(C=Cs[i], ...).fit(X[draws[i]], masks[draws[i]], n_classes=n_classes)``
    up to floating-point rounding. Draws with the same images share one design matrix in the solver,
    so a C grid over one draw costs about one fit.

    Args:
        X: (N, h, w, d) patch features of the pool, float16 or float32.
        masks: (N, H, W) integer class maps of the pool (255 = ignore).
        draws: per probe, (m_i,) int image indices into X and masks (repeats count twice).
        Cs: per probe, its C (> 0); as many as draws.
        n_classes: K >= 2.
        max_iter: L-BFGS iterations per fit at most.
        tol: gradient tolerance, scikit-learn's ``tol``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: ``"auto"``, ``"float64"`` or ``"float32"``.

    Returns:
        The fitted probes, in the order of ``draws``.

    Raises:
        HeadError: invalid parameters or inputs, or a draw whose masks hold fewer than two classes.
        DeviceError: ``device="cuda"`` without CUDA.
    """
    if len(draws) != len(Cs):
        raise HeadError(f"fit_seg_linear_batch: {len(draws)} draws but {len(Cs)} Cs; pass one C per draw.")
    probes = [SegLinearProbe(C=C, max_iter=max_iter, tol=tol, device=device, precision=precision) for C in Cs]
    _fit_into(probes, X, masks, draws, n_classes=n_classes)
    return probes


def _fit_into(
    probes: Sequence[SegLinearProbe], X: Any, masks: Any, draws: Sequence[Any], *, n_classes: Any, many: bool = True
) -> None:
    """Fit probe i on the images ``draws[i]`` in one batched solve; the probes share all but C."""
    first = probes[0]
    for probe in probes:
        positive(probe.C, owner=OWNER, name="C", hint="scikit-learn's default is 1.0")
    positive(first.max_iter, owner=OWNER, name="max_iter", hint="e.g. 1000", integer=True)
    positive(first.tol, owner=OWNER, name="tol", hint="scikit-learn's default is 1e-4")
    backend = resolved_backend(first.device, first.precision, owner=OWNER)
    x = check_patch_features(X, owner=OWNER)
    k = infer_n_classes(masks, n_classes, owner=OWNER)
    m = check_masks(masks, n_classes=k, owner=OWNER, n_images=x.shape[0])
    n, h, w, d = x.shape
    grid = check_grid((h, w), m.shape[1:], owner=OWNER)
    rows = [_check_draw(dr, i, n=n) for i, dr in enumerate(draws)]
    used = np.unique(np.concatenate(rows))
    targets = np.zeros((n, h, w, k), np.float32)
    targets[used] = patch_targets(m[used], grid=grid, n_classes=k)
    p, c = np.nonzero(targets.reshape(-1, k))  # row-major: each image's copies are contiguous
    weight = targets.reshape(-1, k)[p, c].astype(np.float64)
    bounds = np.searchsorted(p // (h * w), np.arange(n + 1))
    problems = []
    for i, (r, probe) in enumerate(zip(rows, probes, strict=True)):
        sel = np.concatenate([np.arange(bounds[j], bounds[j + 1]) for j in r])
        present = np.unique(c[sel])
        if present.size < 2:
            where = f"draw {i}'s masks hold" if many else "the masks hold"
            raise HeadError(
                f"{OWNER}: {where} only class(es) {present.tolist()}; a segmentation probe needs at least two "
                "classes (add images with another class, or labelled background)."
            )
        problems.append(LinearProblem(rows=p[sel], y=c[sel], C=float(probe.C), sample_weight=weight[sel]))
    solutions = solve_logistic_batch(
        x.reshape(-1, d),
        problems,
        n_classes=k,
        standardize=False,
        max_iter=int(first.max_iter),
        tol=float(first.tol),
        device=first.device,
        precision=first.precision,
    )
    for probe, sol in zip(probes, solutions, strict=True):
        _set_fitted(probe, sol, k=k, d=d, grid=grid, mask_size=m.shape[1:], backend=backend)


def _check_draw(draw: Any, i: int, *, n: int) -> np.ndarray:
    r = np.asarray(draw)
    if r.ndim != 1 or r.size == 0 or r.dtype.kind not in "iu":
        raise HeadError(
            f"fit_seg_linear_batch: draw {i} must be a non-empty 1-D array of image indices; got {r.dtype} {r.shape}."
        )
    if r.min() < 0 or r.max() >= n:
        raise HeadError(f"fit_seg_linear_batch: draw {i} holds image {int(r.max())} but X has {n} images.")
    return r.astype(np.int64)


def _set_fitted(
    probe: SegLinearProbe,
    sol: LinearSolution,
    *,
    k: int,
    d: int,
    grid: tuple[int, int],
    mask_size: tuple[int, ...],
    backend: tuple[str, str],
) -> SegLinearProbe:
    probe.classes_ = sol.classes.astype(np.int64)
    probe.n_classes_ = k
    probe.coef_ = sol.coef
    probe.intercept_ = sol.intercept
    probe.n_features_in_ = d
    probe.grid_ = grid
    probe.mask_size_ = (int(mask_size[0]), int(mask_size[1]))
    probe.n_iter_ = sol.n_iter
    probe.converged_ = sol.converged
    probe.objective_ = sol.objective
    probe.device_, probe.dtype_ = backend
    return probe
