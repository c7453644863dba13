"""Label spreading on a FAISS kNN graph: a few labelled rows, the rest of the train split unlabelled.

Zhou et al.'s label spreading ("Learning with local and global consistency", 2004) on a sparse
symmetric kNN graph of cosine similarities, solved by conjugate gradient. Unlabelled rows are
marked ``y = -1``, as in :mod:`sklearn.semi_supervised`. New rows (the evaluation split) are
classified by their nearest training rows' spread label distributions. The graph depends only on
the features, so :func:`fit_label_spreading` builds it once and solves every few-shot draw of a
curve in one batched solve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin

from probe.errors import HeadError
from probe.heads._validation import check_features, check_fitted, labels_from_proba
from probe.heads.knn import KNNProbe

UNLABELED = -1
WEIGHTS = ("cosine", "connectivity")
# Columns (problems x classes) per batched solve: bounds the solver's (n, columns) work arrays.
SOLVE_COLUMNS = 256


class LabelSpreadingProbe(ClassifierMixin, BaseEstimator):
    """Label spreading over the kNN graph of the training rows (labelled and unlabelled).

    Graph: every training row is joined to its ``n_neighbors`` most cosine-similar other rows
    (exact FAISS search through :class:`~probe.heads.knn.KNNProbe`) with weight
    ``max(sim, 0) ** power`` (``weight="cosine"``, the weighting of Iscen et al. 2019) or 1
    (``"connectivity"``); the graph is symmetrised, ``W = A + A.T``, and normalised,
    ``S = D^-1/2 W D^-1/2`` with ``D`` the row sums of ``W``.

    Spreading: the label matrix ``F`` (n_samples, n_classes) solves
    ``(I - alpha S) F = (1 - alpha) Y`` with ``Y`` one-hot on labelled rows and zero on
    unlabelled ones, the fixed point of scikit-learn's ``LabelSpreading`` iteration
    ``F <- alpha S F + (1 - alpha) Y``. It is solved by conjugate gradient (``I - alpha S`` is
    symmetric positive definite), each column until its residual is ``tol`` times its right-hand
    side. With ``class_mass=True`` each column is then rescaled so that its total equals its
    class's share of the labelled rows (Zhu et al.'s class mass normalisation, 2003): as ``alpha``
    nears 1 every column tends to the same degree-weighted profile, and a class whose few labelled
    rows sit in a dense region would otherwise swallow the others. Rows of ``F`` are normalised
    to distributions (``label_distributions_``); a row that no label reaches (an isolated
    component) gets the uniform distribution.

    Induction: ``predict_proba`` on new rows is the weighted mean of the label distributions of
    their ``n_neighbors`` nearest training rows, with the graph's weights (scikit-learn's
    ``kernel="knn"`` induction uses the same rule with uniform weights).

    Args:
        n_neighbors: graph neighbours per row (and neighbours per query at predict time).
        alpha: spreading strength in (0, 1); larger trusts the graph more than the given labels.
        weight: ``"cosine"`` (``max(sim, 0) ** power``) or ``"connectivity"`` (1 per edge).
        power: exponent of the cosine weight (> 0).
        class_mass: rescale each class's spread mass to its share of the labelled rows.
        max_iter: conjugate-gradient iterations at most.
        tol: relative residual at which a column of the solve stops.
        device: where the FAISS search runs: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see :class:`KNNProbe`).

    Attributes:
        classes_: (n_classes,) sorted labels of the labelled rows.
        label_distributions_: (n_samples, n_classes) float64 spread label distribution per training row.
        transduction_: (n_samples,) label of each training row after spreading.
        n_iter_: conjugate-gradient iterations run.
        converged_: whether every column met ``tol`` within ``max_iter``.
        n_labeled_: number of labelled training rows.
        n_features_in_: feature width seen at ``fit``.
        index_: the fitted :class:`KNNProbe` holding the training rows (searched at predict time).
        graph_: (n_samples, n_samples) sparse CSR normalised affinity ``S``.
    """

    def __init__(
        self,
        *,
        n_neighbors: int = 20,
        alpha: float = 0.99,
        weight: str = "cosine",
        power: float = 3.0,
        class_mass: bool = True,
        max_iter: int = 500,
        tol: float = 1e-6,
        device: str = "auto",
    ) -> None:
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.weight = weight
        self.power = power
        self.class_mass = class_mass
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def fit(self, X: Any, y: Any) -> LabelSpreadingProbe:
        """Build the graph of ``X`` and spread the labels of the labelled rows.

        Args:
            X: (n_samples, n_features) training features, labelled and unlabelled rows.
            y: (n_samples,) integer class labels, ``-1`` for unlabelled rows.

        Returns:
            self.

        Raises:
            HeadError: invalid parameters or inputs (no labelled row, n_neighbors >= n_samples, ...).
        """
        (probe,) = fit_label_spreading(X, y, [None], estimator=self)
        self.__dict__.update({k: v for k, v in probe.__dict__.items() if k.endswith("_")})
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of new rows from their nearest training rows.

        Args:
            X: (n, n_features) features.

        Returns:
            (n, n_classes) float64 probabilities, columns in the order of ``classes_``.
        """
        return predict_proba_shared([self], X)[0]

    def predict(self, X: Any) -> np.ndarray:
        """Labels of new rows (ties go to the smallest label).

        Args:
            X: (n, n_features) features.

        Returns:
            (n,) predicted labels.
        """
        return labels_from_proba(self.predict_proba(X), self.classes_)

    def _check_params(self, n_samples: int) -> None:
        k = self.n_neighbors
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise HeadError(f"n_neighbors must be an integer >= 1; got {k!r}. Use e.g. n_neighbors=20.")
        if k >= n_samples:
            raise HeadError(
                f"n_neighbors={k} needs more than {k} training rows but X has {n_samples}; "
                f"pass n_neighbors <= {n_samples - 1}."
            )
        if not 0 < self.alpha < 1:
            raise HeadError(f"alpha must lie in (0, 1); got {self.alpha!r} (0.99 spreads far, 0.2 stays close).")
        if self.weight not in WEIGHTS:
            raise HeadError(f"unknown weight {self.weight!r}; use one of {', '.join(WEIGHTS)}.")
        if not 0 < self.power < np.inf:
            raise HeadError(f"power must be a finite number > 0; got {self.power!r}.")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise HeadError(f"max_iter must be an integer >= 1; got {self.max_iter!r}.")
        if not 0 < self.tol < 1:
            raise HeadError(f"tol must lie in (0, 1); got {self.tol!r}.")


def fit_label_spreading(
    X: Any, y: Any, supports: Sequence[Any], *, estimator: LabelSpreadingProbe | None = None
) -> list[LabelSpreadingProbe]:
    """Spread the labels of each support over one shared graph of ``X``, in one batched solve.

    The probe of support ``s`` equals ``LabelSpreadingProbe(...).fit(X, y_s)`` where ``y_s`` keeps
    the labels of the rows in ``s`` and marks every other row ``-1``: labels outside the supports
    are only validated, never used.

    Args:
        X: (n, d) features of every training row (labelled or not).
        y: (n,) integer labels; ``-1`` marks unlabelled rows.
        supports: per probe, (m_i,) int row indices of its labelled rows, or None for every row
            whose label is not ``-1``.
        estimator: the hyper-parameters (default ``LabelSpreadingProbe()``); it is not modified.

    Returns:
        One fitted probe per support, in order; they share ``index_`` and ``graph_``.

    Raises:
        HeadError: invalid inputs or parameters, or a support without a labelled row.
    """
    template = LabelSpreadingProbe() if estimator is None else estimator
    xb = check_features(X)
    n = xb.shape[0]
    labels = _check_semi_labels(y, n_samples=n)
    template._check_params(n)
    params = template.get_params()
    seeds = [_support_labels(labels, s, i, len(supports)) for i, s in enumerate(supports)]
    index, graph = _build_graph(xb, params)
    blocks = [np.unique(lab[lab != UNLABELED]) for lab in seeds]
    probes: list[LabelSpreadingProbe] = []
    for group in _column_groups([cls.size for cls in blocks]):
        rhs = np.concatenate([(1 - template.alpha) * _one_hot(seeds[i], blocks[i]) for i in group], axis=1)
        F, n_iter, done = _solve(graph, rhs, alpha=template.alpha, tol=template.tol, max_iter=template.max_iter)
        start = 0
        for i in group:
            cls, cols = blocks[i], slice(start, start + blocks[i].size)
            start += cls.size
            probe = LabelSpreadingProbe(**params)
            probe.classes_ = cls
            share = _class_shares(seeds[i], cls) if template.class_mass else None
            probe.label_distributions_ = _distributions(F[:, cols], share)
            probe.transduction_ = labels_from_proba(probe.label_distributions_, cls)
            probe.n_iter_ = n_iter
            probe.converged_ = bool(done[cols].all())
            probe.n_labeled_ = int((seeds[i] != UNLABELED).sum())
            probe.n_features_in_ = xb.shape[1]
            probe.index_ = index
            probe.graph_ = graph
            probes.append(probe)
    return probes


def predict_proba_shared(probes: Sequence[LabelSpreadingProbe], X: Any) -> list[np.ndarray]:
    """Class probabilities of each probe on ``X`` from one neighbour search (probes must share ``index_``).

    Args:
        probes: probes from one :func:`fit_label_spreading` call (or a single fitted probe).
        X: (n, n_features) features.

    Returns:
        Per probe, (n, n_classes) float64 probabilities in the order of its ``classes_``.
    """
    for p in probes:
        check_fitted(p, "label_distributions_")
    first = probes[0]
    if any(p.index_ is not first.index_ for p in probes):
        raise HeadError("predict_proba_shared needs probes fitted together by fit_label_spreading on one X.")
    xq = check_features(X, n_features=first.n_features_in_)
    sims, idx = first.index_.search(xq, first.n_neighbors)
    w = _edge_weights(sims, first.weight, first.power)
    out = []
    for p in probes:
        mass = np.einsum("qk,qkc->qc", w, p.label_distributions_[idx])
        total = mass.sum(axis=1, keepdims=True)
        uniform = np.full_like(mass, 1.0 / p.classes_.size)
        out.append(np.where(total > 0, mass / np.where(total > 0, total, 1.0), uniform))
    return out


def _check_semi_labels(y: Any, *, n_samples: int) -> np.ndarray:
    """(n,) int64 labels, >= 0 or -1 for unlabelled."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n_samples:
        raise HeadError(f"y must be 1-D with one label per row of X ({n_samples}); got shape {arr.shape}.")
    whole = arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr))) and bool(np.all(arr == np.round(arr)))
    if arr.dtype.kind not in "iu" and not whole:
        raise HeadError(f"y must hold integer class indices (-1 = unlabelled); got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < UNLABELED:
        raise HeadError(f"y holds label {int(arr.min())}; use class indices >= 0 and -1 for unlabelled rows.")
    return arr


def _support_labels(labels: np.ndarray, support: Any, i: int, n_supports: int) -> np.ndarray:
    """Labels of one problem: the support's labels, -1 everywhere else."""
    name = "y" if n_supports == 1 and support is None else f"support {i}"
    if support is None:
        out = labels
    else:
        rows = np.asarray(support)
        if rows.ndim != 1 or rows.dtype.kind not in "iu" or rows.size == 0:
            raise HeadError(f"{name} must be a non-empty 1-D array of row indices; got {rows.dtype} {rows.shape}.")
        if rows.min() < 0 or rows.max() >= labels.size:
            raise HeadError(f"{name} holds row {int(rows.max())} but X has {labels.size} rows; index rows of X.")
        out = np.full(labels.size, UNLABELED, np.int64)
        out[rows] = labels[rows]
    if not (out != UNLABELED).any():
        raise HeadError(f"{name} has no labelled row; give at least one label >= 0 (-1 marks unlabelled rows).")
    return out


def _column_groups(widths: Sequence[int]) -> list[list[int]]:
    """Consecutive problems grouped so that one solve holds at most ``SOLVE_COLUMNS`` columns (or one problem)."""
    groups: list[list[int]] = [[]]
    used = 0
    for i, w in enumerate(widths):
        if groups[-1] and used + w > SOLVE_COLUMNS:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += w
    return groups


def _one_hot(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(n, len(classes)) float64 one-hot rows for labelled rows, zeros for unlabelled ones."""
    return (labels[:, None] == classes[None, :]).astype(np.float64)


def _edge_weights(sims: np.ndarray, weight: str, power: float) -> np.ndarray:
    """(n, k) float64 edge weights from (n, k) cosine similarities."""
    if weight == "connectivity":
        return np.ones(sims.shape, np.float64)
    return np.maximum(sims.astype(np.float64), 0.0) ** float(power)


def _build_graph(xb: np.ndarray, params: dict[str, Any]) -> tuple[KNNProbe, sparse.csr_matrix]:
    """The searchable index of the rows and the (n, n) normalised symmetric affinity ``S``."""
    n, k = xb.shape[0], int(params["n_neighbors"])
    index = KNNProbe(k=k + 1, normalize=True, device=params["device"]).fit(xb, np.zeros(n, np.int64))
    sims, idx = index.search(xb)
    # drop each row's own entry; a row whose exact duplicates crowd it out of the list drops the last
    keep = idx != np.arange(n)[:, None]
    keep[keep.all(axis=1), -1] = False
    sims, idx = sims[keep].reshape(n, k), idx[keep].reshape(n, k)
    w = _edge_weights(sims, params["weight"], params["power"])
    a = sparse.csr_matrix((w.ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    sym = (a + a.T).tocsr()
    degree = np.asarray(sym.sum(axis=1)).ravel()
    inv = np.where(degree > 0, 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0)), 0.0)
    d = sparse.diags(inv)
    return index, (d @ sym @ d).tocsr()


def _solve(
    S: sparse.csr_matrix, B: np.ndarray, *, alpha: float, tol: float, max_iter: int
) -> tuple[np.ndarray, int, np.ndarray]:
    """Column-wise conjugate gradient for ``(I - alpha S) F = B``.

    Args:
        S: (n, n) symmetric normalised affinity.
        B: (n, m) right-hand sides.
        alpha: spreading strength.
        tol: relative residual per column.
        max_iter: iterations at most.

    Returns:
        F: (n, m) solution; iterations run; (m,) bool, which columns met ``tol``.
    """
    F = B.copy()  # the labels themselves: already the answer on labelled rows when alpha is small
    R = B - (F - alpha * (S @ F))
    P = R.copy()
    rs = np.einsum("ij,ij->j", R, R)
    goal = (tol * np.linalg.norm(B, axis=0)) ** 2
    it = 0
    while it < max_iter and not (done := rs <= goal).all():
        AP = P - alpha * (S @ P)
        pap = np.einsum("ij,ij->j", P, AP)
        step = np.where(done | (pap <= 0), 0.0, rs / np.where(pap > 0, pap, 1.0))
        F += step * P
        R -= step * AP
        rs_new = np.einsum("ij,ij->j", R, R)
        P = R + np.where(rs > 0, rs_new / np.where(rs > 0, rs, 1.0), 0.0) * P
        rs = rs_new
        it += 1
    return F, it, rs <= goal


def _class_shares(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(c,) share of each class among the labelled rows."""
    counts = (labels[:, None] == classes[None, :]).sum(axis=0)
    return counts / counts.sum()


def _distributions(F: np.ndarray, share: np.ndarray | None) -> np.ndarray:
    """(n, c) rows of ``F`` (clipped at 0, columns rescaled to ``share`` when given) normalised to
    sum 1; rows without mass become uniform."""
    mass = np.maximum(F, 0.0)
    if share is not None:
        col = mass.sum(axis=0)
        mass = mass * np.where(col > 0, share / np.where(col > 0, col, 1.0), 0.0)
    total = mass.sum(axis=1, keepdims=True)
    uniform = np.full_like(mass, 1.0 / max(F.shape[1], 1))
    return np.where(total > 0, mass / np.where(total > 0, total, 1.0), uniform)
