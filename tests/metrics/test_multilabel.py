"""Multi-label metrics against scikit-learn: per-label AUROC, AP, F1 at tuned thresholds, bootstrap, masks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from probe.errors import MetricError
from probe.metrics import metric_label
from probe.metrics._bootstrap import draw_resamples
from probe.metrics.multilabel import (
    DEFAULT_THRESHOLD,
    bootstrap_ci_multilabel,
    bootstrap_distribution_multilabel,
    compute_multilabel_metrics,
    resolve_metrics,
    tune_thresholds,
)

LABELS = ("a", "b", "c", "d")
ALL = ("macro_auroc", "macro_ap", "macro_f1", "per_label")


def _toy(n: int = 300, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores rounded to 2 decimals (many ties), prevalences 5-50 %, 10 % of entries ignored."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 4)) < [0.1, 0.3, 0.5, 0.05]).astype(np.int64)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random((n, 4)), 0, 1), 2)
    y[rng.random((n, 4)) < 0.1] = -1
    return y, p


def _sk(y: np.ndarray, p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """scikit-learn on each label's known rows."""
    out = {}
    for j, name in enumerate(LABELS):
        k = y[:, j] >= 0
        out[f"auroc[{name}]"] = roc_auc_score(y[k, j], p[k, j])
        out[f"ap[{name}]"] = average_precision_score(y[k, j], p[k, j])
        out[f"f1[{name}]"] = f1_score(y[k, j], p[k, j] >= t[j])
    for kind in ("auroc", "ap", "f1"):
        out[f"macro_{kind}"] = float(np.mean([out[f"{kind}[{name}]"] for name in LABELS]))
    return out


def test_values_match_sklearn_with_ties_and_ignored_entries() -> None:
    y, p = _toy()
    t = tune_thresholds(y, p)
    ours = compute_multilabel_metrics(y, p, metrics=ALL, labels=LABELS, thresholds=t)
    ref = _sk(y, p, t)
    assert set(ours) == set(ref)
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name


def test_tuned_threshold_is_the_f1_optimum_of_the_tuning_rows() -> None:
    y, p = _toy(n=100, seed=3)
    t = tune_thresholds(y, p)
    for j in range(4):
        k = y[:, j] >= 0
        if not (y[k, j] == 1).any():  # no positive to find: the default cut
            assert t[j] == DEFAULT_THRESHOLD
            continue
        best = max(f1_score(y[k, j], p[k, j] >= c) for c in np.unique(p[k, j]))
        assert f1_score(y[k, j], p[k, j] >= t[j]) == pytest.approx(best)
        assert not np.isin(t[j], p[k, j]) or t[j] == p[k, j].min()  # a midpoint between two scores
    none = np.zeros((5, 2), np.int64)
    none[:, 1] = [1, 0, 1, -1, 0]
    assert tune_thresholds(none, np.random.default_rng(0).random((5, 2)))[0] == DEFAULT_THRESHOLD


def test_bootstrap_distribution_equals_sklearn_on_each_resample() -> None:
    y, p = _toy(n=120, seed=5)
    t = tune_thresholds(y, p)
    idx = np.random.default_rng(1).integers(0, 120, (6, 120))
    dist = bootstrap_distribution_multilabel(y, p, metrics=ALL, labels=LABELS, resamples=idx, thresholds=t)
    for b in range(6):
        ref = _sk(y[idx[b]], p[idx[b]], t)
        for name, value in ref.items():
            assert dist[name][b] == pytest.approx(value, abs=1e-12), (name, b)


def test_bootstrap_ci_uses_the_single_label_resamples() -> None:
    y, p = _toy(n=80, seed=2)
    t = tune_thresholds(y, p)
    ci = bootstrap_ci_multilabel(y, p, metrics=["macro_auroc", "f1[b]"], labels=LABELS, thresholds=t, n_resamples=200)
    rows = np.concatenate(list(draw_resamples(0, 80, 200)))  # the rows every bootstrap of seed 0 resamples
    dist = bootstrap_distribution_multilabel(
        y, p, metrics=["macro_auroc", "f1[b]"], labels=LABELS, resamples=rows, thresholds=t
    )
    for name in ci:
        v = dist[name][~np.isnan(dist[name])]
        assert ci[name] == pytest.approx(tuple(np.percentile(v, [2.5, 97.5])))
    point = compute_multilabel_metrics(y, p, metrics=["macro_auroc"], labels=LABELS)
    assert ci["macro_auroc"][0] <= point["macro_auroc"] <= ci["macro_auroc"][1]


def test_undefined_labels_and_errors() -> None:
    y = np.array([[1, 0], [0, 0], [1, -1], [0, 0]])
    p = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.5], [0.1, 0.2]])
    v = compute_multilabel_metrics(y, p, metrics=["per_label", "macro_auroc"], labels=["x", "y"], thresholds=[0.5, 0.5])
    assert v["auroc[x]"] == 1.0 and np.isnan(v["auroc[y]"]) and np.isnan(v["ap[y]"]) and np.isnan(v["f1[y]"])
    assert v["macro_auroc"] == 1.0  # the mean over labels where AUROC is defined
    with pytest.raises(MetricError, match="F1 needs per-label thresholds"):
        compute_multilabel_metrics(y, p, metrics=["macro_f1"], labels=["x", "y"])
    with pytest.raises(MetricError, match="names no label"):
        compute_multilabel_metrics(y, p, metrics=["auroc[z]"], labels=["x", "y"])
    with pytest.raises(MetricError, match="unknown multi-label metric 'accuracy'"):
        resolve_metrics(["accuracy"], labels=["x"])
    with pytest.raises(MetricError, match="needs a label with both"):
        compute_multilabel_metrics(y[:, 1:], p[:, 1:], metrics=["macro_auroc"], labels=["y"])
    with pytest.raises(MetricError, match=r"1 \(positive\), 0 \(negative\) or -1"):
        compute_multilabel_metrics(y + 1, p, metrics=["macro_ap"], labels=["x", "y"])
    assert resolve_metrics(["per_label"], labels=["x", "y"]) == (
        "auroc[x]",
        "auroc[y]",
        "ap[x]",
        "ap[y]",
        "f1[x]",
        "f1[y]",
    )
    assert metric_label("auroc[Pleural Effusion]") == "AUROC of Pleural Effusion"
    assert metric_label("macro_ap") == "macro average precision (mAP)"
