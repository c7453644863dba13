"""Multi-label heads: per-label kNN vote mass and per-label positive/negative prototypes.

Targets are (n, C) with 1 (positive), 0 (negative) or -1 (ignored: an uncertain entry masked by
the source's policy); an optional ``mask`` (n, C) bool marks further entries to ignore (False).
An ignored entry never votes and never enters a prototype for its label; the sample still counts
for the other labels. ``predict_proba`` returns (n, C) per-label probabilities of the positive
state and ``predict`` thresholds them at 0.5. The one-vs-rest linear head lives in
:mod:`probe.heads.multilabel_linear`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from probe.errors import HeadError
from probe.heads._validation import check_features, check_fitted, l2_normalize
from probe.heads.knn import GPU_MAX_K, KNNProbe, _vote_weights
from probe.heads.prototype import METHODS

# (queries x neighbours x labels) cells per block of the vote tally: bounds its arrays to ~32 MiB.
_TALLY_CELLS = 2**22


def check_multilabel_targets(
    Y: Any, *, n_samples: int, mask: Any = None, name: str = "Y"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate multi-label targets.

    Args:
        Y: (n, C) integer targets: 1, 0, or -1 (ignored).
        n_samples: rows of the matching feature matrix.
        mask: optional (n, C) bool, False where an entry is ignored.
        name: how the array is called in error messages.

    Returns:
        targets: (n, C) int64 in {0, 1} (ignored entries hold 0).
        known: (n, C) bool, True where the entry counts.

    Raises:
        HeadError: wrong shape, values outside {-1, 0, 1}, or a mask of another shape.
    """
    arr = np.asarray(Y)
    if arr.ndim != 2 or arr.shape[0] != n_samples or arr.shape[1] < 1:
        raise HeadError(
            f"{name} must be (n_samples, n_labels) = ({n_samples}, C) multi-label targets; got shape {arr.shape}."
        )
    if arr.dtype.kind not in "iub" and not (arr.dtype.kind == "f" and np.isin(arr, (-1.0, 0.0, 1.0)).all()):
        raise HeadError(f"{name} must hold integers 1, 0 or -1 (ignored); got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if not np.isin(arr, (-1, 0, 1)).all():
        bad = arr[~np.isin(arr, (-1, 0, 1))][0]
        raise HeadError(f"{name} holds {int(bad)}; multi-label targets are 1, 0 or -1 (ignored).")
    known = arr >= 0
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != arr.shape or m.dtype != bool:
            raise HeadError(f"mask must be a bool array of {name}'s shape {arr.shape}; got {m.dtype} {m.shape}.")
        known &= m
    return np.where(known, arr, 0), known


def label_prior(targets: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(C,) smoothed positive rate ``(positives + 0.5) / (known + 1)``: the answer of a label without evidence."""
    return ((targets * known).sum(axis=0) + 0.5) / (known.sum(axis=0) + 1.0)


class MultiLabelKNNProbe(ClassifierMixin, BaseEstimator):
    """Per-label weighted kNN: the share of the neighbours' vote mass that is positive for each label.

    Neighbours and vote weights are those of :class:`~probe.heads.knn.KNNProbe` (exact cosine search
    on FAISS; ``temperature``, ``uniform`` or ``distance`` votes). For a query q and label j::

        proba[q, j] = sum_i w_qi * known_ij * y_ij / sum_i w_qi * known_ij      (i over the k neighbours)

    A query whose k neighbours all ignore label j gets the label's smoothed training rate ``prior_``.

    Args:
        k: neighbours per query; an int, or a sequence of ints for :meth:`predict_proba_all`.
        vote: ``"temperature"``, ``"uniform"`` or ``"distance"``.
        temperature: softness of the temperature vote (> 0).
        normalize: L2-normalise rows (cosine similarity).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (the FAISS index; see :class:`KNNProbe`).

    Attributes:
        knn_: the fitted :class:`KNNProbe` holding the index (its own labels are unused).
        targets_: (n, C) int64 training targets (ignored entries 0).
        known_: (n, C) bool, which training entries vote.
        prior_: (C,) smoothed positive rate per label.
        n_labels_: C.
        ks_: the k values.
        n_features_in_: feature width seen at ``fit``.
    """

    def __init__(
        self,
        *,
        k: int | Sequence[int] = 20,
        vote: str = "temperature",
        temperature: float = 0.07,
        normalize: bool = True,
        device: str = "auto",
    ) -> None:
        self.k = k
        self.vote = vote
        self.temperature = temperature
        self.normalize = normalize
        self.device = device

    def fit(self, X: Any, Y: Any, *, mask: Any = None) -> MultiLabelKNNProbe:
        """Index the training rows.

        Args:
            X: (n, d) training features.
            Y: (n, C) targets: 1, 0 or -1 (ignored).
            mask: optional (n, C) bool, False for further ignored entries.

        Returns:
            self.
        """
        xb = check_features(X)
        self.targets_, self.known_ = check_multilabel_targets(Y, n_samples=xb.shape[0], mask=mask)
        knn = KNNProbe(
            k=self.k, vote=self.vote, temperature=self.temperature, normalize=self.normalize, device=self.device
        )
        self.knn_ = knn.fit(xb, np.zeros(xb.shape[0], dtype=np.int64))
        self.prior_ = label_prior(self.targets_, self.known_)
        self.n_labels_ = self.targets_.shape[1]
        self.ks_ = self.knn_.ks_
        self.n_features_in_ = xb.shape[1]
        return self

    def predict_proba_all(self, X: Any) -> dict[int, np.ndarray]:
        """Per-label probabilities for every fitted k, from one search at the largest k.

        Args:
            X: (n, d) query features.

        Returns:
            k -> (n, C) float64 positive vote shares.
        """
        check_fitted(self, "knn_")
        sims, indices = self.knn_.search(X)
        return self._tally(sims, indices, self.ks_)

    def loo_proba_all(self) -> dict[int, np.ndarray]:
        """Leave-one-out probabilities of the training rows (each row's own vote removed), for every k.

        Used to tune decision thresholds on the training rows without the self-match. Needs
        ``max(k) + 1 <= n`` training rows.

        Returns:
            k -> (n, C) float64.
        """
        check_fitted(self, "knn_")
        n, kmax = self.targets_.shape[0], max(self.ks_)
        if kmax + 1 > n:
            raise HeadError(f"leave-one-out with k={kmax} needs at least {kmax + 1} training rows; it has {n}.")
        index = self.knn_.index_
        if self.knn_.device_.startswith("cuda") and kmax + 1 > GPU_MAX_K:  # one more than FAISS's GPU search returns
            index = faiss.index_gpu_to_cpu(index)
        sims, indices = index.search(self._train_rows(), kmax + 1)
        own = indices == np.arange(n)[:, None]
        drop = np.where(own.any(axis=1), np.argmax(own, axis=1), kmax)  # self, else the farthest (exact ties)
        keep = np.ones_like(own)
        keep[np.arange(n), drop] = False
        shape = (n, kmax)
        return self._tally(sims[keep].reshape(shape), indices[keep].reshape(shape), self.ks_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, C) per-label probabilities for the single fitted k."""
        check_fitted(self, "knn_")
        if len(self.ks_) != 1:
            raise HeadError(
                f"predict_proba needs a single k; this probe has k={list(self.ks_)}: use predict_proba_all."
            )
        return self.predict_proba_all(X)[self.ks_[0]]

    def predict(self, X: Any) -> np.ndarray:
        """(n, C) int64 0/1: probability >= 0.5."""
        return (self.predict_proba(X) >= 0.5).astype(np.int64)

    def _train_rows(self) -> np.ndarray:
        xb = self.knn_.index_.reconstruct_n(0, self.targets_.shape[0])
        return np.ascontiguousarray(xb, dtype=np.float32)

    def _tally(self, sims: np.ndarray, indices: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
        weights = _vote_weights(sims, self.vote, self.temperature)
        n, kmax = indices.shape
        c = self.n_labels_
        out = {k: np.empty((n, c)) for k in ks}
        step = max(1, _TALLY_CELLS // max(1, kmax * c))
        for lo in range(0, n, step):
            idx, w = indices[lo : lo + step], weights[lo : lo + step]
            known = self.known_[idx].astype(np.float64)  # (q, kmax, C)
            pos = known * self.targets_[idx]
            for k in ks:
                num = np.einsum("qk,qkc->qc", w[:, :k], pos[:, :k])
                den = np.einsum("qk,qkc->qc", w[:, :k], known[:, :k])
                out[k][lo : lo + step] = np.where(den > 0, num / np.where(den > 0, den, 1.0), self.prior_)
        return out


class MultiLabelPrototypeProbe(ClassifierMixin, BaseEstimator):
    """Per-label positive and negative prototypes: a binary nearest-prototype head for every label.

    For label j the positive prototype is the mean of the training rows labelled 1 and the negative
    prototype that of the rows labelled 0 (ignored entries in neither), built as
    :class:`~probe.heads.prototype.PrototypeProbe` builds class centroids (``"simpleshot"``: rows
    centred on the mean of *all* training rows and L2-normalised, Euclidean; ``"cosine"``: the same
    rows, prototypes re-normalised, cosine; ``"centroid"``: raw means, Euclidean). The label's score
    is ``s_pos - s_neg`` (negative squared distances, or cosine similarities) and
    ``proba = sigmoid(score / temperature)``: exactly the two-class
    softmax of :class:`PrototypeProbe` fitted on that label alone. A label whose training rows lack
    positives or negatives has no score; its probability is the smoothed rate ``prior_``.

    Args:
        method: ``"simpleshot"``, ``"cosine"`` or ``"centroid"``.
        temperature: softmax temperature (> 0).

    Attributes:
        positive_: (C, d) float64 positive prototypes (zeros for degenerate labels).
        negative_: (C, d) float64 negative prototypes.
        mean_: (d,) float64 training mean (``"simpleshot"``, ``"cosine"``).
        prior_: (C,) smoothed positive rate per label.
        degenerate_: (C,) bool, labels without both positives and negatives.
        n_labels_: C.
        n_features_in_: feature width seen at ``fit``.
    """

    def __init__(self, *, method: str = "simpleshot", temperature: float = 0.1) -> None:
        self.method = method
        self.temperature = temperature

    def fit(self, X: Any, Y: Any, *, mask: Any = None) -> MultiLabelPrototypeProbe:
        """Compute both prototypes of every label.

        Args:
            X: (n, d) support features.
            Y: (n, C) targets: 1, 0 or -1 (ignored).
            mask: optional (n, C) bool, False for further ignored entries.

        Returns:
            self.
        """
        if self.method not in METHODS:
            raise HeadError(
                f"MultiLabelPrototypeProbe(method={self.method!r}) is unknown; use one of {', '.join(METHODS)}"
            )
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float, np.number)) or not 0 < t < np.inf:
            raise HeadError(f"temperature must be a finite number > 0; got {t!r}, e.g. temperature=0.1.")
        x = check_features(X).astype(np.float64)
        targets, known = check_multilabel_targets(Y, n_samples=x.shape[0], mask=mask)
        if self.method != "centroid":
            self.mean_ = x.mean(axis=0)
            x = l2_normalize(x - self.mean_)
        pos_w = (known & (targets == 1)).T.astype(np.float64)  # (C, n)
        neg_w = (known & (targets == 0)).T.astype(np.float64)
        n_pos, n_neg = pos_w.sum(axis=1), neg_w.sum(axis=1)
        self.degenerate_ = (n_pos == 0) | (n_neg == 0)
        self.positive_ = (pos_w @ x) / np.maximum(n_pos, 1)[:, None]
        self.negative_ = (neg_w @ x) / np.maximum(n_neg, 1)[:, None]
        if self.method == "cosine":
            self.positive_, self.negative_ = l2_normalize(self.positive_), l2_normalize(self.negative_)
        self.prior_ = label_prior(targets, known)
        self.n_labels_ = targets.shape[1]
        self.n_features_in_ = x.shape[1]
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """(n, C) float64 ``s_pos - s_neg`` per label (0 for degenerate labels)."""
        check_fitted(self, "positive_")
        x = check_features(X, n_features=self.n_features_in_).astype(np.float64)
        if self.method != "centroid":
            x = l2_normalize(x - self.mean_)
        if self.method == "cosine":
            score = x @ self.positive_.T - x @ self.negative_.T
        else:
            sq = (x * x).sum(axis=1)[:, None]
            d_pos = sq - 2 * x @ self.positive_.T + (self.positive_**2).sum(axis=1)
            d_neg = sq - 2 * x @ self.negative_.T + (self.negative_**2).sum(axis=1)
            score = np.maximum(d_neg, 0.0) - np.maximum(d_pos, 0.0)
        return np.where(self.degenerate_, 0.0, score)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, C) float64 ``sigmoid(score / temperature)`` per label; ``prior_`` for degenerate labels."""
        z = self.decision_function(X) / float(self.temperature)
        proba = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow
        return np.where(self.degenerate_, self.prior_, proba)

    def predict(self, X: Any) -> np.ndarray:
        """(n, C) int64 0/1: probability >= 0.5."""
        return (self.predict_proba(X) >= 0.5).astype(np.int64)
