"""The parameters the single- and multi-label logistic-regression estimators share, stated once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from sklearn.base import BaseEstimator

from probe.heads._linear_selection import LinearProbeConfig


class LinearParams(BaseEstimator):
    """scikit-learn parameters of a logistic-regression probe (see :class:`~probe.heads.linear.LinearProbe`).

    ``select_metric=None`` means the estimator's :attr:`DEFAULT_SELECT_METRIC`.
    """

    DEFAULT_SELECT_METRIC: ClassVar[str] = "accuracy"

    def __init__(
        self,
        *,
        C: float | str = "auto",
        c_grid: Sequence[float] | None = None,
        standardize: bool = True,
        selection: str = "auto",
        cv_folds: int = 5,
        refit: str = "train",
        select_metric: str | None = None,
        max_iter: int = 1000,
        tol: float = 1e-4,
        selection_tol: float | None = None,
        device: str = "auto",
        precision: str = "auto",
        seed: int = 0,
        batch_memory_mb: int = 1024,
    ) -> None:
        self.C = C
        self.c_grid = c_grid
        self.standardize = standardize
        self.selection = selection
        self.cv_folds = cv_folds
        self.refit = refit
        self.select_metric = select_metric
        self.max_iter = max_iter
        self.tol = tol
        self.selection_tol = selection_tol
        self.device = device
        self.precision = precision
        self.seed = seed
        self.batch_memory_mb = batch_memory_mb

    def _config(self) -> LinearProbeConfig:
        """The parameters as the solver's config (``select_metric`` resolved to the estimator's default)."""
        params = self.get_params()
        params["select_metric"] = params["select_metric"] or self.DEFAULT_SELECT_METRIC
        return LinearProbeConfig(**params)
