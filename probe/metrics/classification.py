"""Classification metrics and fast bootstrap intervals over the test set.

Every metric is computed from per-sample resample counts, so a point estimate is the count vector of
all ones and a bootstrap resample is the count vector of its draws. Confusion-matrix metrics come
from one sparse product that adds each sample's counts to its cell ``true * K + pred``; AUROC is a
weighted Mann–Whitney statistic (ties count one half) from one sort per class, one sparse product
that sums the counts between consecutive positives, and cumulative sums of those. All metrics are
higher-is-better.

Undefined values: ``recall[i]`` of a class absent from ``y_true`` and ``qwk`` when ``y_true`` and
``y_pred`` hold the same single class are NaN; ``macro_auroc`` (no class with both positives and
negatives) and ``medmnist_auc`` (a class without positives or negatives) raise :class:`MetricError`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix

from probe.errors import MetricError
from probe.metrics._bootstrap import (
    check_confidence,
    percentile_interval,
    resample_counts,
    resampled_weights,
    weights_form,
)

METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro F1",
    "macro_auroc": "macro AUROC (one-vs-rest)",
    "mcc": "Matthews correlation",
    "qwk": "quadratic weighted kappa",
    "medmnist_acc": "ACC (MedMNIST definition)",
    "medmnist_auc": "AUC (MedMNIST definition)",
    "per_class_recall": "per-class recall",
}
METRICS = tuple(METRIC_LABELS)  # valid names, besides "recall[<i>]" for class index i
_RECALL = re.compile(r"recall\[(\d+)\]")
_AUC_METRICS = ("macro_auroc", "medmnist_auc")


def metric_label(name: str) -> str:
    """Human label of a metric name, e.g. ``"balanced accuracy"`` or ``"recall of class 3"``."""
    match = _RECALL.fullmatch(name)
    if match:
        return f"recall of class {int(match.group(1))}"
    if name not in METRIC_LABELS:
        raise _unknown(name)
    return METRIC_LABELS[name]


def resolve_metrics(metrics: str | Sequence[str], *, n_classes: int) -> tuple[str, ...]:
    """Validate metric names and expand ``per_class_recall`` to ``recall[0]`` .. ``recall[K-1]``.

    Args:
        metrics: names from :data:`METRICS` or ``"recall[<i>]"``; a single string is one name.
        n_classes: K, the number of proba columns.

    Returns:
        The names in order, duplicates removed.

    Raises:
        MetricError: an unknown name, or a recall index outside [0, K).
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise MetricError(f"no metric requested; pass at least one of {', '.join(METRICS)}.")
    out: list[str] = []
    for name in names:
        match = _RECALL.fullmatch(name) if isinstance(name, str) else None
        if name == "per_class_recall":
            out.extend(f"recall[{i}]" for i in range(n_classes))
        elif match:
            if int(match.group(1)) >= n_classes:
                raise MetricError(f"metric {name!r} names a class outside 0..{n_classes - 1}; use a valid index.")
            out.append(f"recall[{int(match.group(1))}]")
        elif name in METRICS:
            out.append(name)
        else:
            raise _unknown(name)
    return tuple(dict.fromkeys(out))


def compute_metrics(
    y_true: Any,
    proba: Any,
    *,
    metrics: str | Sequence[str],
    n_classes: int | None = None,
    y_pred: Any = None,
) -> dict[str, float]:
    """Compute metrics of one set of predictions.

    Args:
        y_true: (n,) int class indices in [0, K); an (n, 1) MedMNIST label array is accepted.
        proba: (n, K) float class scores; AUROC uses them, and ``y_pred`` defaults to their arg-max
            (ties to the smallest class index).
        metrics: names from :data:`METRICS` or ``"recall[<i>]"``.
        n_classes: K, checked against ``proba.shape[1]`` when given.
        y_pred: (n,) int predicted classes used by the confusion-matrix metrics. ``medmnist_acc``
            ignores it and follows the official code: ``proba[:, 1] > 0.5`` when K == 2, else arg-max.

    Returns:
        Metric name → value; ``per_class_recall`` appears expanded as ``recall[i]`` keys.

    Raises:
        MetricError: invalid inputs or names, or an AUROC that no class of ``y_true`` supports.
    """
    data, names = _prepare(y_true, proba, metrics, n_classes=n_classes, y_pred=y_pred)
    values = _evaluate(data, names, _point_weights(data.n))
    _check_auc_defined(data, values)
    return {name: float(values[name][0]) for name in names}


def bootstrap_distribution(
    y_true: Any, proba: Any, *, metrics: str | Sequence[str], resamples: Any, y_pred: Any = None
) -> dict[str, np.ndarray]:
    """Metric values on explicit bootstrap resamples of the test set (paired across metrics).

    Args:
        y_true: (n,) int class indices; ``proba``, ``metrics`` and ``y_pred`` as in :func:`compute_metrics`.
        resamples: (B, n) int row indices in [0, n); row b is the b-th resample.

    Returns:
        Metric name → (B,) float64 values, equal to :func:`compute_metrics` on ``rows[resamples[b]]``;
        NaN where the metric is undefined on that resample (an AUROC class without positives, ...).
    """
    data, names = _prepare(y_true, proba, metrics, n_classes=None, y_pred=y_pred)
    idx = np.asarray(resamples)
    if idx.ndim != 2 or idx.shape[1] != data.n or idx.dtype.kind not in "iu":
        raise MetricError(f"resamples must be (B, {data.n}) integer row indices; got {idx.dtype} {idx.shape}.")
    if idx.size and (idx.min() < 0 or idx.max() >= data.n):
        raise MetricError(f"resamples hold row indices outside [0, {data.n}); draw them with integers(0, n).")
    return _evaluate(data, names, weights_form(resample_counts(idx)))


def bootstrap_ci(
    y_true: Any,
    proba: Any,
    *,
    metrics: str | Sequence[str],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    y_pred: Any = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals over test samples, paired across metrics.

    Resample b is row b of ``np.random.default_rng(seed).integers(0, n, (n_resamples, n))`` (drawn in
    blocks to bound memory, which yields the same rows). A resample on which a metric is undefined is
    left out of that metric's interval; a metric undefined on every resample gets (nan, nan).

    Args:
        y_true: (n,) int class indices; ``proba``, ``metrics`` and ``y_pred`` as in :func:`compute_metrics`.
        n_resamples: B, the number of bootstrap resamples.
        confidence: central coverage of the interval, in (0, 1).
        seed: seed of the resampling generator.

    Returns:
        Metric name → (low, high).

    Raises:
        MetricError: as :func:`compute_metrics`, or a bad ``n_resamples`` / ``confidence``.
    """
    if int(n_resamples) < 1:
        raise MetricError(f"n_resamples must be at least 1; got {n_resamples}.")
    return metrics_and_ci(
        y_true, proba, metrics=metrics, n_resamples=n_resamples, confidence=confidence, seed=seed, y_pred=y_pred
    )[1]


def metrics_and_ci(
    y_true: Any,
    proba: Any,
    *,
    metrics: str | Sequence[str],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    y_pred: Any = None,
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """:func:`compute_metrics` and :func:`bootstrap_ci` of one set of predictions, validated and sorted once.

    Args:
        y_true, proba, metrics, y_pred: as in :func:`compute_metrics`.
        n_resamples: B as in :func:`bootstrap_ci`; 0 computes no interval.
        confidence, seed: as in :func:`bootstrap_ci`.

    Returns:
        (metric name → value, metric name → (low, high); empty when ``n_resamples`` is 0).
    """
    check_confidence(confidence)
    if int(n_resamples) < 0:
        raise MetricError(f"n_resamples must be 0 (no interval) or more; got {n_resamples}.")
    data, names = _prepare(y_true, proba, metrics, n_classes=None, y_pred=y_pred)
    point = _evaluate(data, names, _point_weights(data.n))
    _check_auc_defined(data, point)
    values = {name: float(point[name][0]) for name in names}
    if not n_resamples:
        return values, {}
    parts = [_evaluate(data, names, weights) for weights in resampled_weights(seed, data.n, n_resamples)]
    cis = {name: percentile_interval(np.concatenate([p[name] for p in parts]), confidence) for name in names}
    return values, cis


# ---------------------------------------------------------------------------------------------------
# validated inputs


@dataclass(frozen=True)
class _AucBlock:
    """Proba columns whose rows of :attr:`_AucOperator.matrix` are interleaved, so that one cumulative
    pass over the positive groups serves all of them.

    Each column's samples are sorted by score and grouped by equal score; its positives fall into
    positive groups. From ``start``: gap rows ``start + i * J + j`` (i < G, padded to the block's
    largest G) sum the negatives of column j scored at or above its positive group i - 1 and below
    group i; positive rows ``start + (G + i) * J + j`` sum the positives of group i; then, per column,
    one row for each positive group with tied negatives (``ties[j]``).
    """

    start: int  # first row
    columns: tuple[int, ...]  # the J proba columns (class c: positives y_true == c, scores proba[:, c])
    groups: int  # G, the most positive groups of any of them
    ties: tuple[tuple[int, np.ndarray], ...]  # per column: (first tie row, (T,) int64 tied positive groups)


@dataclass(frozen=True)
class _AucOperator:
    """The sparse 0/1 matrix that turns sample weights into per-group sums for every AUROC column."""

    matrix: Any  # scipy.sparse CSR, (rows, n) float32
    blocks: tuple[_AucBlock, ...]


#: Columns share a block while the largest has at most this many times the positive groups of the
#: smallest, which bounds the padding: at most about 3n gap and positive rows for n test rows, however
#: unbalanced the classes.
GROUP_RATIO = 1.5
#: Rows at least this wide (a block's columns x resamples) are cumulated by a Python loop of row adds,
#: narrower ones by numpy's strided axis-0 cumsum (on the 2-core test machine the loop is 2-4x faster at
#: 256-8000 values per row and the cumsum 3x faster at 83).
ROW_LOOP_WIDTH = 128


@dataclass(frozen=True)
class _Data:
    """Validated inputs: labels, the confusion cell of each sample, and the proba columns."""

    n: int  # test samples
    n_classes: int  # K, the proba columns
    y_true: np.ndarray  # (n,) int64
    # (K * K + 1, n) scipy CSR float32: row y_true * K + y_pred holds each sample (its confusion cell),
    # row K * K the samples the official MedMNIST prediction gets right
    tallies: Any
    auc: _AucOperator | None  # the proba columns an AUROC needs (None when no AUROC is asked)


def _prepare(
    y_true: Any, proba: Any, metrics: str | Sequence[str], *, n_classes: int | None, y_pred: Any
) -> tuple[_Data, tuple[str, ...]]:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise MetricError(f"proba must be (n, K) scores with n >= 1 and K >= 2 classes; got shape {p.shape}.")
    k = p.shape[1]
    if n_classes is not None and n_classes != k:
        raise MetricError(f"n_classes={n_classes} but proba has {k} columns; pass one column per class.")
    if not np.isfinite(p).all():
        bad = np.flatnonzero(~np.isfinite(p).all(axis=1))
        raise MetricError(f"proba holds NaN/inf in {bad.size} row(s) (first: {bad[:5].tolist()}); fix the head.")
    yt = _check_labels(y_true, "y_true", n=p.shape[0], k=k)
    yp = np.argmax(p, axis=1) if y_pred is None else _check_labels(y_pred, "y_pred", n=p.shape[0], k=k)
    official = (p[:, 1] > 0.5).astype(np.int64) if k == 2 else np.argmax(p, axis=1)
    n = p.shape[0]
    right = np.flatnonzero(official == yt)
    rows, samples = np.concatenate([yt * k + yp, np.full(right.size, k * k)]), np.concatenate([np.arange(n), right])
    tallies = coo_matrix((np.ones(rows.size, dtype=np.float32), (rows, samples)), shape=(k * k + 1, n)).tocsr()
    names = resolve_metrics(metrics, n_classes=k)
    auc = _auc_operator(p, yt) if any(m in names for m in _AUC_METRICS) else None
    return _Data(n, k, yt, tallies, auc), names


def _check_labels(y: Any, name: str, *, n: int, k: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n:
        raise MetricError(f"{name} has shape {arr.shape} but proba has {n} rows; pass one class index per row.")
    integral = arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    if arr.dtype.kind not in "iu" and not integral:
        raise MetricError(f"{name} must hold integer class indices; got dtype {arr.dtype}. Encode labels first.")
    if arr.min() < 0 or arr.max() >= k:
        bad = arr[(arr < 0) | (arr >= k)]
        raise MetricError(
            f"{name} holds label {int(bad[0])} outside [0, {k}) (proba has {k} columns); "
            "map labels to 0..K-1 and pass one proba column per class."
        )
    return arr.astype(np.int64)


def _check_auc_defined(data: _Data, values: dict[str, np.ndarray]) -> None:
    present = np.unique(data.y_true).tolist()
    for name in _AUC_METRICS:
        if name in values and np.isnan(values[name][0]):
            need = "both classes" if data.n_classes == 2 else "at least two classes"
            need = "every class" if name == "medmnist_auc" and data.n_classes > 2 else need
            raise MetricError(
                f"{name} needs {need} in the test split, but y_true holds only classes {present}; "
                "evaluate on a split with more classes or drop this metric."
            )


def _unknown(name: object) -> MetricError:
    return MetricError(f"unknown metric {name!r}; choose from {', '.join(METRICS)} or 'recall[<i>]'.")


# ---------------------------------------------------------------------------------------------------
# weighted computation: resample b drew row i weights[i, b] times (probe.metrics._bootstrap.weights_form:
# (n, B) float32, sample-major)


def _point_weights(n: int) -> np.ndarray:
    """The weights of the point estimate (every row once), (n, 1)."""
    return np.ones((n, 1), dtype=np.float32)


def _evaluate(data: _Data, names: Sequence[str], weights: np.ndarray) -> dict[str, np.ndarray]:
    k = data.n_classes
    # float32 sums of integer counts are exact below 2**24 samples
    tallies = (data.tallies @ weights).T.astype(np.float64)  # (B, K * K + 1)
    conf = tallies[:, : k * k].reshape(-1, k, k)  # rows: true class, columns: predicted
    recall = _recalls(conf)
    auc = _class_aucs(data, weights, conf.sum(axis=2)) if any(m in names for m in _AUC_METRICS) else None
    out: dict[str, np.ndarray] = {}
    for name in names:
        match = _RECALL.fullmatch(name)
        if match:
            out[name] = recall[:, int(match.group(1))]
        elif name == "medmnist_acc":
            out[name] = tallies[:, k * k] / data.n
        elif name in _AUC_METRICS:
            assert auc is not None
            out[name] = _auc_summary(auc, name)
        else:
            out[name] = _CONFUSION_METRICS[name](conf)
    return out


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den != 0)


def _recalls(conf: np.ndarray) -> np.ndarray:
    return _div(np.diagonal(conf, axis1=1, axis2=2), conf.sum(axis=2))


def _accuracy(conf: np.ndarray) -> np.ndarray:
    return np.trace(conf, axis1=1, axis2=2) / conf.sum(axis=(1, 2))


def _balanced_accuracy(conf: np.ndarray) -> np.ndarray:
    # As scikit-learn: mean recall over the classes present in y_true.
    recall = _recalls(conf)
    present = ~np.isnan(recall)
    return np.where(present, recall, 0.0).sum(axis=1) / present.sum(axis=1)


def _macro_f1(conf: np.ndarray) -> np.ndarray:
    # As scikit-learn's default labels: classes absent from both y_true and y_pred are left out.
    support = conf.sum(axis=2) + conf.sum(axis=1)
    f1 = _div(2 * np.diagonal(conf, axis1=1, axis2=2), support)
    return np.where(support > 0, f1, 0.0).sum(axis=1) / (support > 0).sum(axis=1)


def _mcc(conf: np.ndarray) -> np.ndarray:
    # Multiclass Matthews correlation (Gorodkin's R_K); 0 when either marginal is constant.
    t, p = conf.sum(axis=2), conf.sum(axis=1)
    n = conf.sum(axis=(1, 2))
    cov_tp = np.trace(conf, axis1=1, axis2=2) * n - (t * p).sum(axis=1)
    cov_tt, cov_pp = n**2 - (t * t).sum(axis=1), n**2 - (p * p).sum(axis=1)
    den = np.sqrt(cov_tt) * np.sqrt(cov_pp)
    return np.where(den > 0, _div(cov_tp, den), 0.0)


def _qwk(conf: np.ndarray) -> np.ndarray:
    # Weights use the class indices 0..K-1 (scikit-learn with labels=range(K)).
    k = conf.shape[1]
    weights = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2.0
    observed = np.einsum("bij,ij->b", conf, weights)
    expected = np.einsum("bi,ij,bj->b", conf.sum(axis=2), weights, conf.sum(axis=1)) / conf.sum(axis=(1, 2))
    return 1.0 - _div(observed, expected)


_CONFUSION_METRICS = {f.__name__.lstrip("_"): f for f in (_accuracy, _balanced_accuracy, _macro_f1, _mcc, _qwk)}


def _class_aucs(data: _Data, weights: np.ndarray, class_weight: np.ndarray) -> np.ndarray:
    """One-vs-rest AUROC of each proba column: (B, K) float64, NaN where undefined (K == 2: column 1 only).

    Weighted Mann–Whitney: P(score_pos > score_neg) + P(tie) / 2 under the weights. With ``P_i`` the
    positive weight of positive group i, ``N_i`` the negative weight below it and ``T_i`` the negative
    weight tied with it, twice the positive-negative pair count is ``sum_i P_i * (2 N_i + T_i)``. One
    sparse product gives every group's sums for every column at once (each sample's weight row added
    to the rows it belongs to); cumulative sums over the gaps give ``N_i``. Sums of weights stay
    integers in float32 (exact below 2**24 samples) and the products are float64, so the result is
    exact up to one rounding.

    Args:
        data: the validated inputs (``data.auc`` the operator).
        weights: (n, B) float32 resample weights.
        class_weight: (B, K) float64 total weight of each true class (the confusion rows' sums).
    """
    b = weights.shape[1]
    out = np.full((b, data.n_classes), np.nan)
    op = data.auc
    if b == 0 or op is None:
        return out
    sums = op.matrix @ weights  # (rows, B) float32
    for blk in op.blocks:
        j, g, at = len(blk.columns), blk.groups, blk.start
        gaps = sums[at : at + g * j].reshape(g, j, b)
        if j * b >= ROW_LOOP_WIDTH:  # cumulative over the gaps, row by row: numpy's axis-0 cumsum is strided
            for i in range(1, g):
                np.add(gaps[i], gaps[i - 1], out=gaps[i])
        else:  # rows too short for a Python step each
            np.cumsum(gaps, axis=0, out=gaps)
        pos = sums[at + g * j : at + 2 * g * j].reshape(g, j, b)
        twice = 2.0 * np.einsum("ijb,ijb->bj", pos, gaps, dtype=np.float64)
        for col, (first, groups) in enumerate(blk.ties):
            if groups.size:
                tied = sums[first : first + groups.size]
                twice[:, col] += np.einsum("ib,ib->b", pos[groups, col], tied, dtype=np.float64)
        cols = list(blk.columns)
        n_pos = class_weight[:, cols]
        out[:, cols] = _div(twice, 2.0 * n_pos * (data.n - n_pos))  # every resample draws n rows
    return out


def _auc_operator(p: np.ndarray, y: np.ndarray) -> _AucOperator:
    """The sparse operator of every proba column an AUROC reads (column 1 only when K == 2).

    Args:
        p: (n, K) float64 scores.
        y: (n,) int64 true classes.

    Returns:
        The (rows, n) matrix and its blocks: columns with similar numbers of positive groups
        (:data:`GROUP_RATIO`) interleaved, each block's tie rows after its gap and positive rows.
    """
    columns = (1,) if p.shape[1] == 2 else tuple(range(p.shape[1]))
    parts = {c: _column_entries(p[:, c], y == c) for c in columns}
    buckets: list[list[int]] = []
    for c in sorted(columns, key=lambda c: parts[c][3]):
        if buckets and parts[c][3] <= GROUP_RATIO * parts[buckets[-1][0]][3]:
            buckets[-1].append(c)
        else:
            buckets.append([c])
    rows, samples, blocks, start = [], [], [], 0
    for bucket in buckets:
        j, g = len(bucket), parts[bucket[-1]][3]
        first, ties = start + 2 * g * j, []
        for col, c in enumerate(bucket):
            gap, pos, tie, _, tie_groups = parts[c]
            rows += [start + gap[0] * j + col, start + (g + pos[0]) * j + col, first + tie[0]]
            samples += [gap[1], pos[1], tie[1]]
            ties.append((first, tie_groups))
            first += tie_groups.size
        blocks.append(_AucBlock(start, tuple(bucket), g, tuple(ties)))
        start = first
    row, sample = np.concatenate(rows), np.concatenate(samples)
    matrix = coo_matrix((np.ones(row.size, dtype=np.float32), (row, sample)), shape=(start, p.shape[0])).tocsr()
    return _AucOperator(matrix, tuple(blocks))


_Entries = tuple[np.ndarray, np.ndarray]  # (m,) rows and (m,) samples of one part


def _column_entries(score: np.ndarray, positive: np.ndarray) -> tuple[_Entries, _Entries, _Entries, int, np.ndarray]:
    """One column's (group, sample) entries: gaps, positives and ties (see :class:`_AucBlock`).

    Args:
        score: (n,) float64 scores of the column.
        positive: (n,) bool, the rows of the column's class.

    Returns:
        Gap entries (positive group above each negative below the top positive group), positive
        entries (each positive's group), tie entries (index into the tie groups), G, and the (T,)
        positive groups with tied negatives.
    """
    order = np.argsort(score, kind="stable")
    ranked = score[order]
    group = np.zeros(order.size, dtype=np.int64)  # equal scores share a group, numbered in score order
    np.cumsum(ranked[1:] != ranked[:-1], out=group[1:])
    is_pos = positive[order]
    pos_at, neg_at = np.flatnonzero(is_pos), np.flatnonzero(~is_pos)
    pos_groups = np.unique(group[pos_at])  # ascending
    neg_group = group[neg_at]
    above = np.searchsorted(pos_groups, neg_group, side="right")  # first positive group scored higher
    below = above < pos_groups.size
    tie = above - 1
    tied = tie >= 0
    tied[tied] = pos_groups[tie[tied]] == neg_group[tied]
    tie_groups = np.unique(tie[tied])
    return (
        (above[below], order[neg_at[below]]),
        (np.searchsorted(pos_groups, group[pos_at]), order[pos_at]),
        (np.searchsorted(tie_groups, tie[tied]), order[neg_at[tied]]),
        pos_groups.size,
        tie_groups,
    )


def _auc_summary(auc: np.ndarray, name: str) -> np.ndarray:
    if auc.shape[1] == 2:
        return auc[:, 1]
    if name == "medmnist_auc":  # the official mean over every class; undefined if one class is
        return auc.mean(axis=1)
    defined = ~np.isnan(auc)
    return _div(np.where(defined, auc, 0.0).sum(axis=1), defined.sum(axis=1).astype(np.float64))
