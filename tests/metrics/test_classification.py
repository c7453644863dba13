"""Tests of probe.metrics against scikit-learn, SciPy and plain resampling loops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    matthews_corrcoef,
    recall_score,
    roc_auc_score,
)

import probe.metrics._bootstrap
from probe.errors import MetricError
from probe.metrics import (
    METRIC_LABELS,
    METRICS,
    PairedComparison,
    bootstrap_ci,
    bootstrap_distribution,
    compute_metrics,
    mean_ci,
    metric_direction,
    metric_label,
    paired_comparison,
)
from probe.metrics.classification import resolve_metrics

ALL = list(METRICS)


def _toy(n: int, k: int, seed: int, *, never: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax scores; a fifth of the rows repeat earlier ones, so every column has ties."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    if never is not None:
        logits[:, never] -= 10.0  # this class is never the arg-max
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    proba[n // 2 : n // 2 + n // 5] = proba[: n // 5]
    return y, proba


def _binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 1)  # one decimal: many ties, some exactly 0.5
    return y, np.column_stack([1 - p1, p1])


Y2, P2 = _binary(60, 0)
Y3, P3 = _toy(90, 3, 1)
Y8, P8 = _toy(200, 8, 2, never=7)
CASES = {"binary": (Y2, P2), "3-class": (Y3, P3), "8-class": (Y8, P8)}


def _ovr_auc(y: np.ndarray, proba: np.ndarray, c: int) -> float:
    return float(roc_auc_score(y == c, proba[:, c])) if 0 < np.sum(y == c) < y.size else np.nan


def _reference(y: np.ndarray, proba: np.ndarray, y_pred: np.ndarray | None = None) -> dict[str, float]:
    """Every metric through scikit-learn and MedMNIST's official definitions (NaN where undefined)."""
    k = proba.shape[1]
    yp = proba.argmax(axis=1) if y_pred is None else y_pred
    aucs = [_ovr_auc(y, proba, c) for c in range(k)]
    official_pred = proba[:, -1] > 0.5 if k == 2 else proba.argmax(axis=1)
    with warnings.catch_warnings():  # balanced accuracy warns when y_pred holds a class absent from y_true
        warnings.simplefilter("ignore")
        ref = {
            "accuracy": accuracy_score(y, yp),
            "balanced_accuracy": balanced_accuracy_score(y, yp),
            "macro_f1": f1_score(y, yp, average="macro"),
            "macro_auroc": aucs[1] if k == 2 else np.nanmean(aucs) if not np.isnan(aucs).all() else np.nan,
            "mcc": matthews_corrcoef(y, yp),
            "qwk": cohen_kappa_score(y, yp, weights="quadratic", labels=np.arange(k)),
            "medmnist_acc": accuracy_score(y, official_pred),
            "medmnist_auc": aucs[1] if k == 2 else np.mean(aucs),
        }
        recalls = recall_score(y, yp, labels=np.arange(k), average=None, zero_division=np.nan)
    ref.update({f"recall[{c}]": r for c, r in enumerate(recalls)})
    return {name: float(v) for name, v in ref.items()}


def _assert_close(got: dict[str, float], want: dict[str, float]) -> None:
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("case", list(CASES))
def test_metrics_match_sklearn(case: str) -> None:
    y, proba = CASES[case]
    got = compute_metrics(y, proba, metrics=ALL, n_classes=proba.shape[1])
    assert len(got) == len(METRICS) - 1 + proba.shape[1]
    _assert_close(got, _reference(y, proba))


@pytest.mark.parametrize("case", ["3-class", "8-class"])
def test_macro_auroc_is_sklearn_ovr_macro(case: str) -> None:
    y, proba = CASES[case]
    got = compute_metrics(y, proba, metrics=["macro_auroc", "medmnist_auc"])
    want = roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert got["macro_auroc"] == pytest.approx(want, abs=1e-9)
    assert got["medmnist_auc"] == pytest.approx(want, abs=1e-9)


def test_binary_auroc_uses_column_one() -> None:
    got = compute_metrics(Y2, P2, metrics=["macro_auroc", "medmnist_auc"])
    assert got["macro_auroc"] == got["medmnist_auc"] == pytest.approx(roc_auc_score(Y2, P2[:, 1]), abs=1e-9)


def test_never_predicted_class_counts_as_zero() -> None:
    assert 7 in Y8 and 7 not in P8.argmax(axis=1)
    got = compute_metrics(Y8, P8, metrics=["recall[7]", "macro_f1"])
    assert got["recall[7]"] == 0.0
    assert got["macro_f1"] == pytest.approx(f1_score(Y8, P8.argmax(axis=1), labels=np.arange(8), average="macro"))


def test_explicit_y_pred_drives_confusion_metrics_only() -> None:
    y_pred = np.random.default_rng(5).integers(0, 3, Y3.size)
    got = compute_metrics(Y3, P3, metrics=ALL, y_pred=y_pred)
    want = _reference(Y3, P3, y_pred)
    want["medmnist_acc"] = accuracy_score(Y3, P3.argmax(axis=1))  # the official ACC always uses proba
    _assert_close(got, want)


def test_class_absent_from_y_true() -> None:
    keep = Y3 != 2  # K = 3 columns, but class 2 never occurs
    y, proba = Y3[keep], P3[keep]
    got = compute_metrics(y, proba, metrics=["macro_auroc", "recall[2]", "balanced_accuracy", "macro_f1"])
    assert got["macro_auroc"] == pytest.approx(np.mean([_ovr_auc(y, proba, c) for c in (0, 1)]), abs=1e-9)
    assert np.isnan(got["recall[2]"])
    ref = _reference(y, proba)
    for name in ("balanced_accuracy", "macro_f1"):
        assert got[name] == pytest.approx(ref[name], abs=1e-9)
    with pytest.raises(MetricError, match=r"medmnist_auc needs every class .* only classes \[0, 1\]"):
        compute_metrics(y, proba, metrics=["medmnist_auc"])


def test_medmnist_binary_hand_example() -> None:
    # Official binary code: AUC of proba[:, -1]; ACC thresholds it with a strict > 0.5.
    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.2, 0.6, 0.4, 0.9, 0.5])
    got = compute_metrics(y, np.column_stack([1 - p1, p1]), metrics=["medmnist_acc", "medmnist_auc"])
    assert got["medmnist_acc"] == pytest.approx(2 / 5)  # predictions 0, 1, 0, 1, 0
    assert got["medmnist_auc"] == pytest.approx(4 / 6)  # positive-negative pairs won: 1 + 2 + 1 of 6


def test_medmnist_acc_threshold_differs_from_argmax_on_unnormalised_scores() -> None:
    y = np.array([1, 1, 0])
    scores = np.array([[0.9, 0.6], [0.1, 0.4], [0.2, 0.3]])
    got = compute_metrics(y, scores, metrics=["accuracy", "medmnist_acc"])
    assert got == {"accuracy": pytest.approx(1 / 3), "medmnist_acc": pytest.approx(2 / 3)}


def test_degenerate_mcc_and_qwk() -> None:
    proba = np.tile([0.7, 0.2, 0.1], (4, 1))  # always predicts class 0
    got = compute_metrics(np.array([0, 1, 2, 0]), proba, metrics=["mcc", "qwk"])
    assert got["mcc"] == 0.0 == matthews_corrcoef([0, 1, 2, 0], [0, 0, 0, 0])
    assert got["qwk"] == pytest.approx(0.0)
    assert np.isnan(compute_metrics(np.zeros(4, int), proba, metrics=["qwk"])["qwk"])


def test_resolve_metrics_and_labels() -> None:
    assert resolve_metrics(["accuracy", "per_class_recall", "recall[1]", "accuracy"], n_classes=3) == (
        "accuracy",
        "recall[0]",
        "recall[1]",
        "recall[2]",
    )
    assert resolve_metrics("qwk", n_classes=2) == ("qwk",)
    assert set(METRIC_LABELS) == set(METRICS)
    assert metric_label("balanced_accuracy") == "balanced accuracy"
    assert metric_label("recall[3]") == "recall of class 3"
    assert metric_direction("macro_auroc") == "higher"


def test_weighted_formulas_at_unit_counts_equal_point_metrics() -> None:
    for y, proba in CASES.values():
        n = y.size
        perm = np.random.default_rng(0).permutation(n)
        dist = bootstrap_distribution(y, proba, metrics=ALL, resamples=np.stack([np.arange(n), perm]))
        point = compute_metrics(y, proba, metrics=ALL)
        for name, value in point.items():
            np.testing.assert_allclose(dist[name], [value, value], rtol=0, atol=1e-12, err_msg=name)


def test_bootstrap_distribution_matches_sklearn_loop() -> None:
    idx = np.random.default_rng(7).integers(0, Y3.size, (20, Y3.size))
    dist = bootstrap_distribution(Y3, P3, metrics=ALL, resamples=idx)
    for b, rows in enumerate(idx):
        _assert_close({name: float(v[b]) for name, v in dist.items()}, _reference(Y3[rows], P3[rows]))


@pytest.mark.parametrize("case", ["binary", "8-class"])
def test_bootstrap_distribution_matches_point_loop(case: str) -> None:
    y, proba = CASES[case]
    idx = np.random.default_rng(8).integers(0, y.size, (15, y.size))
    dist = bootstrap_distribution(y, proba, metrics=ALL, resamples=idx)
    for b, rows in enumerate(idx):
        _assert_close(
            {name: float(v[b]) for name, v in dist.items()}, compute_metrics(y[rows], proba[rows], metrics=ALL)
        )


def test_bootstrap_marks_undefined_resamples_nan() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 2])  # class 2 appears once: many resamples miss it
    proba = np.random.default_rng(3).dirichlet(np.ones(3), y.size)
    idx = np.random.default_rng(4).integers(0, y.size, (40, y.size))
    dist = bootstrap_distribution(y, proba, metrics=["macro_auroc", "medmnist_auc", "recall[2]"], resamples=idx)
    drawn = y[idx]
    missing = ~(drawn == 2).any(axis=1)
    assert missing.any() and not missing.all()
    assert np.isnan(dist["recall[2]"][missing]).all() and not np.isnan(dist["recall[2]"][~missing]).any()
    every = np.all([(drawn == c).any(axis=1) for c in range(3)], axis=0)
    assert np.array_equal(np.isnan(dist["medmnist_auc"]), ~every)  # the official mean needs every class
    two = np.sum([(drawn == c).any(axis=1) for c in range(3)], axis=0) >= 2
    assert np.array_equal(np.isnan(dist["macro_auroc"]), ~two)  # the macro needs one computable class


@pytest.mark.parametrize("block_cells", [probe.metrics._bootstrap.BLOCK_CELLS, 7 * Y8.size])
def test_bootstrap_ci_is_percentile_of_seeded_resamples(block_cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe.metrics._bootstrap, "BLOCK_CELLS", block_cells)  # 7 resamples per block when small
    names = ["balanced_accuracy", "macro_auroc", "medmnist_auc", "qwk", "recall[7]"]
    ci = bootstrap_ci(Y8, P8, metrics=names, n_resamples=50, seed=3, confidence=0.9)
    idx = np.random.default_rng(3).integers(0, Y8.size, (50, Y8.size))
    dist = bootstrap_distribution(Y8, P8, metrics=names, resamples=idx)
    for name in names:
        assert ci[name] == pytest.approx(tuple(np.percentile(dist[name], [5, 95])), rel=1e-12)


def test_bootstrap_ci_is_seeded() -> None:
    first = bootstrap_ci(Y3, P3, metrics=ALL, n_resamples=100, seed=1)
    assert first == bootstrap_ci(Y3, P3, metrics=ALL, n_resamples=100, seed=1)
    assert first != bootstrap_ci(Y3, P3, metrics=ALL, n_resamples=100, seed=2)
    point = compute_metrics(Y3, P3, metrics=ALL)
    assert all(low <= point[name] <= high for name, (low, high) in first.items())


def test_mean_ci_matches_student_t() -> None:
    values = np.array([0.81, 0.79, 0.84, np.nan, 0.80, 0.83])
    mean, low, high = mean_ci(values, confidence=0.9)
    finite = values[~np.isnan(values)]
    want = scipy.stats.t.interval(0.9, finite.size - 1, loc=finite.mean(), scale=scipy.stats.sem(finite))
    assert mean == pytest.approx(finite.mean())
    assert (low, high) == pytest.approx(want, abs=1e-12)
    single = mean_ci([0.5, np.nan])
    assert single[0] == 0.5 and np.isnan(single[1]) and np.isnan(single[2])
    assert np.isnan(mean_ci([])).all()
    assert mean_ci([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7, 0.7))


def test_paired_comparison_matches_scipy() -> None:
    rng = np.random.default_rng(9)
    b = rng.random(12)
    a = b + 0.02 + 0.03 * rng.standard_normal(12)
    got = paired_comparison(a, b, n_resamples=2000, seed=4)
    d = a - b
    assert isinstance(got, PairedComparison) and got.n_pairs == 12
    assert got.mean_diff == pytest.approx(d.mean())
    assert got.wilcoxon_p == pytest.approx(scipy.stats.wilcoxon(d).pvalue)
    means = d[np.random.default_rng(4).integers(0, 12, (2000, 12))].mean(axis=1)
    assert (got.ci_low, got.ci_high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), rel=1e-12)
    assert got == paired_comparison(a, b, n_resamples=2000, seed=4)


def test_paired_comparison_edge_cases() -> None:
    one = paired_comparison([0.5, np.nan], [0.4, 0.3])
    assert one.n_pairs == 1 and one.mean_diff == pytest.approx(0.1)
    assert np.isnan([one.ci_low, one.ci_high, one.wilcoxon_p]).all()
    same = paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert np.isnan(same.wilcoxon_p) and same.mean_diff == same.ci_low == same.ci_high == 0.0
    with pytest.raises(MetricError, match="a has 3 values and b has 2"):
        paired_comparison([1, 2, 3], [1, 2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": ["f1"]}, r"unknown metric 'f1'; choose from accuracy, balanced_accuracy.*recall\[<i>\]"),
        ({"metrics": ["recall[3]"]}, r"'recall\[3\]' names a class outside 0..2"),
        ({"metrics": []}, "no metric requested"),
        ({"y_true": np.array([0, 1, 3, 0, 1, 2])}, r"y_true holds label 3 outside \[0, 3\)"),
        ({"y_true": np.array([0, 1, 2, 0, 1])}, r"y_true has shape \(5,\) but proba has 6 rows"),
        ({"y_true": np.array([0.0, 1.5, 2, 0, 1, 2])}, "y_true must hold integer class indices"),
        ({"y_pred": np.array([0, 1, 2, 0, 1, -1])}, r"y_pred holds label -1 outside \[0, 3\)"),
        ({"proba": np.ones(6)}, r"proba must be \(n, K\) scores"),
        ({"proba": np.full((6, 3), np.nan)}, "proba holds NaN/inf in 6 row"),
        ({"n_classes": 4}, "n_classes=4 but proba has 3 columns"),
        ({"y_true": np.zeros(6, int), "metrics": ["macro_auroc"]}, r"macro_auroc needs at least two classes .*\[0\]"),
    ],
)
def test_compute_metrics_errors(kwargs: dict, match: str) -> None:
    args = {"y_true": Y3[:6], "proba": P3[:6], "metrics": ["accuracy"], **kwargs}
    with pytest.raises(MetricError, match=match):
        compute_metrics(args.pop("y_true"), args.pop("proba"), **args)


def test_single_class_auroc_errors_in_point_and_bootstrap() -> None:
    y = np.ones(6, dtype=int)
    with pytest.raises(MetricError, match="macro_auroc needs both classes in the test split"):
        compute_metrics(y, P2[:6], metrics=["macro_auroc"])
    with pytest.raises(MetricError, match="medmnist_auc needs both classes in the test split"):
        bootstrap_ci(y, P2[:6], metrics=["medmnist_auc"], n_resamples=10)


def test_bootstrap_argument_errors() -> None:
    with pytest.raises(MetricError, match="confidence must lie in"):
        bootstrap_ci(Y2, P2, metrics=["accuracy"], confidence=95)
    with pytest.raises(MetricError, match="n_resamples must be at least 1"):
        bootstrap_ci(Y2, P2, metrics=["accuracy"], n_resamples=0)
    with pytest.raises(MetricError, match=r"resamples hold row indices outside \[0, 60\)"):
        bootstrap_distribution(Y2, P2, metrics=["accuracy"], resamples=np.full((2, 60), 60))
    with pytest.raises(MetricError, match=r"resamples must be \(B, 60\) integer row indices"):
        bootstrap_distribution(Y2, P2, metrics=["accuracy"], resamples=np.zeros(60, int))


def test_zero_resamples_are_empty_and_all_tied_scores_give_one_half() -> None:
    rng = np.random.default_rng(5)
    y, p = rng.integers(0, 4, 700), rng.dirichlet(np.ones(4), 700)
    names = ["macro_auroc", "medmnist_auc", "balanced_accuracy"]
    empty = bootstrap_distribution(y, p, metrics=names, resamples=np.zeros((0, 700), dtype=np.int64))
    assert all(v.shape == (0,) for v in empty.values())
    flat = np.full((700, 4), 0.25)  # one tie group per column: every positive-negative pair counts one half
    dist = bootstrap_distribution(y, flat, metrics=["macro_auroc"], resamples=rng.integers(0, 700, (5, 700)))
    assert np.array_equal(dist["macro_auroc"], np.full(5, 0.5))


def test_auroc_operator_rows_stay_linear_in_n_for_unbalanced_classes() -> None:
    import probe.metrics.classification as C

    rng = np.random.default_rng(6)
    n = 3000
    y = np.where(rng.random(n) < 0.95, 0, rng.integers(1, 6, n))  # one class holds 95 % of the rows
    p = rng.dirichlet(np.ones(6), n)
    data, _ = C._prepare(y, p, ["macro_auroc"], n_classes=None, y_pred=None)
    # one block padded to the large class would hold about 6 x 2 x 2850 rows
    assert data.auc is not None and data.auc.matrix.shape[0] <= 3 * n and len(data.auc.blocks) >= 2
    want = [roc_auc_score(y == c, p[:, c]) for c in range(6)]
    assert compute_metrics(y, p, metrics=["macro_auroc"])["macro_auroc"] == pytest.approx(np.mean(want), abs=1e-12)


def test_resample_caches_share_one_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    B = probe.metrics._bootstrap
    monkeypatch.setattr(B, "_COUNTS", type(B._COUNTS)())
    monkeypatch.setattr(B, "_WEIGHTS", type(B._WEIGHTS)())
    one = 100 * 50 * 4  # the float32 weights of one (seed, n=50, B=100) draw
    monkeypatch.setattr(B, "CACHE_BYTES", 2 * one)
    for seed in range(4):
        B.resampled_weights(seed, 50, 100)
    assert [k[0] for k in B._WEIGHTS] == [2, 3]  # the two newest draws fit
    B.resampled_counts(9, 50, 100)  # int32 counts: 20,000 bytes, so one weights draw makes room
    assert [k[0] for k in B._WEIGHTS] == [3] and [k[0] for k in B._COUNTS] == [9]
    monkeypatch.setattr(B, "CACHE_BYTES", one - 1)
    B.resampled_weights(7, 50, 100)  # larger than the whole budget: computed, not kept
    assert 7 not in [k[0] for k in B._WEIGHTS]
