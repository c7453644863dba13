"""One-vs-rest logistic regression for multi-label targets, every label a problem of the batched solver.

Label j is fitted as scikit-learn's binary ``LogisticRegression`` on the rows where its entry is
known (ignored entries are left out, so the features are standardised with those rows' statistics),
with its **own C**, chosen as :class:`~probe.heads.linear.LinearProbe` chooses it: on the validation
rows known for that label when validation data is given, else by stratified k-fold CV inside the
training rows, else (fewer than two positives or negatives) the fixed rule C = 1. The selection
score defaults to the negative log-loss: a proper score that, unlike accuracy, does not reward
predicting "absent" for a rare label. Every label of every support — each with all its CV folds and
C values — goes through one batched solve per selection round; labels with identical known rows
share one design matrix. A label whose rows hold a single state gets a constant model, the
smoothed rate ``(positives + 0.5) / (known + 1)`` (``degenerate_``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin

from probe.errors import HeadError
from probe.heads._linear_params import LinearParams
from probe.heads._linear_selection import Context, LinearProbeConfig, Plan, SelectedFit, plan_support, run_plans
from probe.heads._logistic import resolved_backend
from probe.heads._validation import check_features, check_fitted
from probe.heads.multilabel import check_multilabel_targets

#: Selection score of the multi-label linear head unless one is given.
DEFAULT_SELECT_METRIC = "neg_log_loss"


class MultiLabelLinearProbe(ClassifierMixin, LinearParams):
    """One-vs-rest L2 logistic regression with a C per label (see the module docstring).

    Args: as :class:`~probe.heads.linear.LinearProbe`; ``select_metric`` defaults to ``"neg_log_loss"``.

    Attributes:
        coef_: (C, d) float64 per-label coefficients on the original features (zeros when degenerate).
        intercept_: (C,) float64 per-label intercepts (the log-odds of the prior when degenerate).
        C_: (C,) float64 chosen C per label (NaN when degenerate).
        selection_: per label, how C was chosen ("cv5-support", "val-grid", "rule:fixed-C=1",
            "fixed", or "constant" for a degenerate label).
        degenerate_: (C,) bool, labels fitted as a constant.
        n_iter_: (C,) int L-BFGS iterations of each final fit (0 when degenerate).
        converged_: (C,) bool.
        n_labels_: C.
        n_features_in_: feature width seen at ``fit``.
        device_: the device the solver ran on, resolved (``"cpu"``, ``"cuda:0"``, ...; never ``"auto"``).
        dtype_: the dtype of its feature products, resolved (``"float64"`` or ``"float32"``).
    """

    DEFAULT_SELECT_METRIC = DEFAULT_SELECT_METRIC

    def fit(
        self, X: Any, Y: Any, *, mask: Any = None, X_val: Any = None, Y_val: Any = None, mask_val: Any = None
    ) -> MultiLabelLinearProbe:
        """Select each label's C (if "auto") and fit.

        Args:
            X: (n, d) training features.
            Y: (n, C) targets: 1, 0 or -1 (ignored).
            mask: optional (n, C) bool, False for further ignored entries.
            X_val: (n_val, d) validation features for C selection / refit, or None.
            Y_val: (n_val, C) validation targets (with ``X_val``).
            mask_val: optional (n_val, C) bool.

        Returns:
            self.
        """
        config = self._config()
        resolved_backend(self.device, self.precision, owner="MultiLabelLinearProbe")  # fail fast, naming this head
        n = np.asarray(X).shape[0] if np.ndim(X) == 2 else 0
        (fit,) = _fit_all(X, Y, [np.arange(n)], mask=mask, X_val=X_val, Y_val=Y_val, mask_val=mask_val, config=config)
        return self._set_fitted(*fit)

    def _set_fitted(self, fits: list[SelectedFit | float], d: int) -> MultiLabelLinearProbe:
        c = len(fits)
        self.coef_, self.intercept_ = np.zeros((c, d)), np.zeros(c)
        self.C_, self.n_iter_ = np.full(c, np.nan), np.zeros(c, dtype=np.int64)
        self.converged_, self.degenerate_ = np.ones(c, dtype=bool), np.zeros(c, dtype=bool)
        self.selection_: list[str] = []
        for j, fit in enumerate(fits):
            if isinstance(fit, SelectedFit):
                self.coef_[j], self.intercept_[j] = fit.solution.coef[0], fit.solution.intercept[0]
                self.C_[j], self.n_iter_[j], self.converged_[j] = fit.C, fit.solution.n_iter, fit.solution.converged
                self.selection_.append(fit.selection)
            else:
                self.intercept_[j] = np.log(fit / (1.0 - fit))
                self.degenerate_[j] = True
                self.selection_.append("constant")
        self.n_labels_ = c
        self.n_features_in_ = d
        self.device_, self.dtype_ = resolved_backend(self.device, self.precision, owner="MultiLabelLinearProbe")
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """(n, C) float64 per-label log-odds ``X @ coef_.T + intercept_``."""
        check_fitted(self, "coef_")
        xq = check_features(X, n_features=self.n_features_in_)
        return xq.astype(np.float64) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, C) float64 per-label probabilities (the logistic function of the log-odds)."""
        return 0.5 * (1.0 + np.tanh(0.5 * self.decision_function(X)))

    def predict(self, X: Any) -> np.ndarray:
        """(n, C) int64 0/1: probability >= 0.5."""
        return (self.decision_function(X) >= 0).astype(np.int64)


def fit_multilabel_linear_probes(
    X: Any,
    Y: Any,
    supports: Sequence[Any],
    *,
    mask: Any = None,
    X_val: Any = None,
    Y_val: Any = None,
    mask_val: Any = None,
    config: LinearProbeConfig | None = None,
) -> list[MultiLabelLinearProbe]:
    """Fit one :class:`MultiLabelLinearProbe` per support, every label of every support batched together.

    Each probe equals ``MultiLabelLinearProbe(**asdict(config)).fit(X[s], Y[s], ...)`` for its support
    ``s`` up to rounding. Without validation data C is chosen inside each support (few-shot).

    Args:
        X: (n, d) features of every row the supports may use.
        Y: (n, C) targets: 1, 0 or -1 (ignored).
        supports: per probe, (m_i,) int row indices into X.
        mask: optional (n, C) bool, False for further ignored entries.
        X_val: (n_val, d) validation features, or None.
        Y_val: (n_val, C) validation targets.
        mask_val: optional (n_val, C) bool.
        config: options (default: ``LinearProbeConfig(select_metric="neg_log_loss")``).

    Returns:
        One fitted probe per support, in order.
    """
    config = LinearProbeConfig(select_metric=DEFAULT_SELECT_METRIC) if config is None else config
    fits = _fit_all(X, Y, supports, mask=mask, X_val=X_val, Y_val=Y_val, mask_val=mask_val, config=config)
    return [MultiLabelLinearProbe(**asdict(config))._set_fitted(*f) for f in fits]


def _fit_all(
    X: Any,
    Y: Any,
    supports: Sequence[Any],
    *,
    mask: Any,
    X_val: Any,
    Y_val: Any,
    mask_val: Any,
    config: LinearProbeConfig,
) -> list[tuple[list[SelectedFit | float], int]]:
    """Per support: one SelectedFit per label (or the constant rate of a degenerate label), and the width."""
    xb = check_features(X)
    n, d = xb.shape
    targets, known = check_multilabel_targets(Y, n_samples=n, mask=mask)
    if (X_val is None) != (Y_val is None):
        raise HeadError("pass X_val and Y_val together (or neither).")
    c = targets.shape[1]
    if X_val is None:
        xv, tv, kv = np.zeros((0, d), np.float32), np.zeros((0, c), np.int64), np.zeros((0, c), bool)
    else:
        xv = check_features(X_val, name="X_val", n_features=d)
        tv, kv = check_multilabel_targets(Y_val, n_samples=xv.shape[0], mask=mask_val, name="Y_val")
        if tv.shape[1] != c:
            raise HeadError(f"Y_val has {tv.shape[1]} labels but Y has {c}; pass the same label columns.")
    if config.refit == "train+val" and xv.shape[0] == 0:
        raise HeadError("refit='train+val' needs validation data; pass X_val and Y_val, or use refit='train'.")
    if config.selection == "val" and config.C == "auto" and xv.shape[0] == 0:
        raise HeadError("selection='val' needs validation data; pass X_val and Y_val, or use selection='cv'.")
    x_all = np.concatenate([xb, xv]) if xv.shape[0] else xb
    contexts = [_label_context(x_all, targets[:, j], tv[:, j], kv[:, j], n, config) for j in range(c)]
    plans: list[Plan] = []
    slots: list[tuple[int, int]] = []
    out: list[list[SelectedFit | float]] = []
    for si, support in enumerate(supports):
        rows = _check_support(support, si, n=n)
        fits: list[SelectedFit | float] = []
        for j in range(c):
            r = rows[known[rows, j]]
            pos = int(targets[r, j].sum())
            fits.append((pos + 0.5) / (r.size + 1.0))  # replaced below unless the label is degenerate
            if 0 < pos < r.size:
                plans.append(plan_support(contexts[j], r))
                slots.append((si, j))
        out.append(fits)
    for (si, j), fit in zip(slots, _run_plans(x_all, plans, config), strict=True):
        out[si][j] = fit
    return [(fits, d) for fits in out]


def _label_context(
    x_all: np.ndarray, y_train: np.ndarray, y_val: np.ndarray, known_val: np.ndarray, n: int, cfg: LinearProbeConfig
) -> Context:
    """The selection context of one label: its 0/1 targets and its known validation rows."""
    val_rows = n + np.flatnonzero(known_val)
    if val_rows.size == 0 and cfg.selection == "val":
        cfg = replace(cfg, selection="auto")  # this label has no known validation entry: CV inside the support
    return Context(X=x_all, y=np.concatenate([y_train, y_val]).astype(np.int64), val_rows=val_rows, cfg=cfg)


def _check_support(support: Any, i: int, *, n: int) -> np.ndarray:
    rows = np.asarray(support)
    if rows.ndim != 1 or rows.size == 0 or rows.dtype.kind not in "iu":
        raise HeadError(f"support {i} must be a non-empty 1-D array of row indices; got {rows.dtype} {rows.shape}.")
    if rows.min() < 0 or rows.max() >= n:
        raise HeadError(f"support {i} holds row {int(rows.max())} but X has {n} rows; index rows of X.")
    return rows.astype(np.int64)


def _run_plans(x_all: np.ndarray, plans: list[Plan], cfg: LinearProbeConfig) -> list[SelectedFit]:
    """Run every (support, label) selection in lockstep: one batched solve per round of requests."""
    return run_plans(x_all, plans, cfg, n_classes=2)
