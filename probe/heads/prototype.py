"""Prototype probe: nearest class mean: SimpleShot (CL2N, Euclidean), centred cosine, or plain Euclidean."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from probe.errors import HeadError
from probe.heads._validation import check_features, check_fitted, check_labels, l2_normalize, labels_from_proba

METHODS = ("simpleshot", "cosine", "centroid")


class PrototypeProbe(ClassifierMixin, BaseEstimator):
    """Nearest-class-mean classifier, the usual few-shot head.

    - ``"simpleshot"`` (Wang et al., 2019, "CL2N", as in the authors' code): subtract ``mean_``,
      L2-normalise each row, take the class means of those rows as ``centroids_`` (not re-normalised)
      and predict the nearest one by Euclidean distance; the score of a class is the negative squared
      distance. Predictions equal scikit-learn's ``NearestCentroid`` on the centred, normalised rows.
      ``mean`` should be the mean of a base set: in probe the whole train split's features, which
      carry no labels (the support's own mean when ``mean`` is None).
    - ``"cosine"`` (probe's rule before SimpleShot was made the reference): the same centring and
      normalisation, then class means re-normalised and scored by cosine similarity.
    - ``"centroid"``: ``centroids_`` are the class means of the raw features; the score for a class
      is the negative squared Euclidean distance to its mean.

    ``predict`` returns the class of highest score (ties go to the smallest label);
    ``predict_proba`` is ``softmax(score / temperature)`` over classes. For the Euclidean rules that
    is the posterior of isotropic Gaussian classes of variance ``temperature / 2`` with equal priors,
    so pick a temperature on the scale of the squared distances (the default 0.1 suits unit rows).
    Rows that are zero after centring stay zero.

    Args:
        method: ``"simpleshot"``, ``"cosine"`` or ``"centroid"``.
        temperature: softmax temperature of ``predict_proba`` (> 0); it does not change ``predict``.
        mean: (n_features,) centring mean of ``"simpleshot"``/``"cosine"`` (None: the support's mean).

    Attributes:
        classes_: (n_classes,) sorted class labels.
        centroids_: (n_classes, n_features) float64 class prototypes, rows in the order of ``classes_``.
        mean_: (n_features,) float64 centring mean (``"simpleshot"`` and ``"cosine"`` only).
        n_features_in_: feature width seen at ``fit``.
    """

    def __init__(self, *, method: str = "simpleshot", temperature: float = 0.1, mean: Any = None) -> None:
        self.method = method
        self.temperature = temperature
        self.mean = mean

    def fit(self, X: Any, y: Any) -> PrototypeProbe:
        """Compute the class prototypes of the support set.

        Args:
            X: (n_samples, n_features) support features; one row per class is enough.
            y: (n_samples,) integer class labels.

        Returns:
            self.

        Raises:
            HeadError: unknown method, temperature <= 0, a mean of the wrong width, or invalid inputs.
        """
        self._check_params()
        x = check_features(X).astype(np.float64)
        labels = check_labels(y, n_samples=x.shape[0])
        self.classes_, codes = np.unique(labels, return_inverse=True)
        centred = self.method != "centroid"
        if centred:
            self.mean_ = x.mean(axis=0) if self.mean is None else np.asarray(self.mean, dtype=np.float64)
            if self.mean_.shape != (x.shape[1],):
                raise HeadError(
                    f"PrototypeProbe(mean=...) has shape {self.mean_.shape}; pass ({x.shape[1]},), "
                    "one value per feature"
                )
            x = l2_normalize(x - self.mean_)
        onehot = np.zeros((self.classes_.size, x.shape[0]))
        onehot[codes, np.arange(x.shape[0])] = 1.0
        centroids = (onehot @ x) / onehot.sum(axis=1, keepdims=True)
        self.centroids_ = l2_normalize(centroids) if self.method == "cosine" else centroids
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Rows in the space of the prototypes: centred on ``mean_`` and L2-normalised (``"centroid"``: as given).

        With a fixed ``mean`` this does not depend on the support, so many fitted probes can score one
        transformed query set (``decision_function(Z, transformed=True)``).

        Args:
            X: (n, n_features) query features.

        Returns:
            (n, n_features) float64 rows.
        """
        check_fitted(self, "centroids_")
        x = check_features(X, n_features=self.n_features_in_).astype(np.float64)
        return x if self.method == "centroid" else l2_normalize(x - self.mean_)

    def decision_function(self, X: Any, *, transformed: bool = False) -> np.ndarray:
        """Score of each class: negative squared distance (simpleshot, centroid) or cosine similarity (cosine).

        Args:
            X: (n, n_features) query features, or rows from :meth:`transform` with ``transformed=True``.
            transformed: X comes from :meth:`transform` of a probe with the same ``mean_``.

        Returns:
            (n, n_classes) float64 scores, columns in the order of ``classes_``.
        """
        check_fitted(self, "centroids_")
        if transformed:
            x = np.asarray(X, dtype=np.float64)
            if x.ndim != 2 or x.shape[1] != self.n_features_in_:
                raise HeadError(f"transformed rows must be (n, {self.n_features_in_}); got shape {x.shape}")
        else:
            x = self.transform(X)
        c = self.centroids_
        if self.method == "cosine":
            return x @ c.T
        sq = (x * x).sum(axis=1)[:, None] - 2.0 * (x @ c.T) + (c * c).sum(axis=1)[None, :]
        return -np.maximum(sq, 0.0)

    def predict_proba(self, X: Any, *, transformed: bool = False) -> np.ndarray:
        """Softmax of the class scores divided by ``temperature``.

        Args:
            X: (n, n_features) query features (or :meth:`transform` rows, see :meth:`decision_function`).
            transformed: X comes from :meth:`transform`.

        Returns:
            (n, n_classes) float64 probabilities, columns in the order of ``classes_``.
        """
        z = self.decision_function(X, transformed=transformed) / float(self.temperature)
        z = np.exp(z - z.max(axis=1, keepdims=True))  # shifting by the row max keeps exp finite
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Label of the nearest prototype.

        Args:
            X: (n, n_features) query features.

        Returns:
            (n,) predicted labels (ties go to the smallest label).
        """
        # Arg-max of the raw scores: exp() can merge two close scores that the scores still separate.
        return labels_from_proba(self.decision_function(X), self.classes_)

    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise HeadError(f"PrototypeProbe(method={self.method!r}) is unknown; use one of {', '.join(METHODS)}")
        t = self.temperature
        valid = isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, bool) and 0 < t < np.inf
        if not valid:
            raise HeadError(f"temperature must be a finite number > 0; got {t!r}, e.g. temperature=0.1.")
