"""Linear probe: batched solver vs scikit-learn's LogisticRegression, C selection rules, guards."""

from __future__ import annotations

import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from probe.errors import DeviceError, HeadError, NotFittedError
from probe.heads.linear import (
    COARSE_GRID,
    RULE_C,
    LinearProbe,
    LinearProbeConfig,
    LinearProblem,
    LinearSolution,
    fit_linear_probes,
    solve_logistic_batch,
)

CS = (0.01, 0.1, 1.0, 10.0)


def _blobs(n: int = 600, d: int = 64, k: int = 5, *, sep: float = 0.35, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes with overlapping means, one constant feature (zero variance)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    rng.shuffle(y)
    X = rng.normal(size=(k, d))[y] * sep + rng.normal(size=(n, d))
    X[:, 5] = 3.0
    return X.astype(np.float32), y


X5, Y5 = _blobs()
TRAIN, VAL, TEST = np.arange(0, 360), np.arange(360, 480), np.arange(480, 600)


def _standardize(Xtr: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    Xtr = Xtr.astype(np.float64)
    mean, scale = Xtr.mean(0), Xtr.std(0)
    scale[scale < 1e-12] = 1.0
    return [(a.astype(np.float64) - mean) / scale for a in (Xtr, *others)]


def _sk_fit(
    Xs: np.ndarray, y: np.ndarray, C: float, w: np.ndarray | None = None, *, tol: float = 1e-10, max_iter: int = 20000
) -> LogisticRegression:
    """scikit-learn's fit; the default is a tight reference, whose stop at machine precision is no failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=C, tol=tol, max_iter=max_iter).fit(Xs, y, sample_weight=w)


def _sk_objective(
    clf: LogisticRegression, Xs: np.ndarray, y: np.ndarray, C: float, w: np.ndarray | None = None
) -> float:
    """C * sum_i w_i CE_i + 0.5 ||coef||^2 of a scikit-learn fit (sigmoid form for two classes)."""
    z = Xs @ clf.coef_.T + clf.intercept_
    if z.shape[1] == 1:
        z = np.concatenate([np.zeros_like(z), z], axis=1)
    ce = np.logaddexp.reduce(z, axis=1) - z[np.arange(y.size), np.searchsorted(clf.classes_, y)]
    w = np.ones(y.size) if w is None else w
    return float(C * (w * ce).sum() + 0.5 * (clf.coef_**2).sum())


def _predict(sol: LinearSolution, X: np.ndarray) -> np.ndarray:
    z = X.astype(np.float64) @ sol.coef.T + sol.intercept
    return sol.classes[(z[:, 0] > 0).astype(int)] if sol.classes.size == 2 else sol.classes[np.argmax(z, 1)]


def _agree_with_sklearn(
    X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, *, tol: float, reference_tol: float
) -> None:
    """Every C of CS in one batched solve vs scikit-learn fitted with ``reference_tol``.

    Objective within 1e-3 relative, test accuracy within 1 pp.
    """
    codes = np.unique(y[train], return_inverse=True)[1]
    problems = [LinearProblem(rows=train, y=codes, C=C) for C in CS]
    sols = solve_logistic_batch(X, problems, n_classes=int(codes.max()) + 1, tol=tol, max_iter=5000, device="cpu")
    Xs_tr, Xs_te = _standardize(X[train], X[test])
    truth = np.searchsorted(np.unique(y[train]), y[test])
    for C, sol in zip(CS, sols, strict=True):
        clf = _sk_fit(Xs_tr, codes, C, tol=reference_tol, max_iter=5000 if reference_tol == tol else 20000)
        assert sol.converged and sol.coef.shape == clf.coef_.shape
        assert sol.objective == pytest.approx(_sk_objective(clf, Xs_tr, codes, C), rel=1e-3), C
        assert abs(np.mean(_predict(sol, X[test]) == truth) - clf.score(Xs_te, truth)) <= 0.01, C


@pytest.mark.parametrize("n_classes", [5, 2])
@pytest.mark.parametrize(("tol", "reference_tol"), [(1e-4, 1e-4), (1e-6, 1e-10)])
def test_solver_matches_sklearn_on_synthetic_data(n_classes: int, tol: float, reference_tol: float) -> None:
    """Same tol: the same stopping rule; tight tol: the same optimum (sklearn's tol=1e-4 is itself ~2e-3 off)."""
    _agree_with_sklearn(X5, Y5 % n_classes, TRAIN, TEST, tol=tol, reference_tol=reference_tol)


def test_solver_iterations_follow_sklearns() -> None:
    y = Y5[TRAIN]
    sols = solve_logistic_batch(X5, [LinearProblem(rows=TRAIN, y=y, C=C) for C in CS], n_classes=5, device="cpu")
    (Xs,) = _standardize(X5[TRAIN])
    for C, sol in zip(CS, sols, strict=True):
        assert abs(sol.n_iter - _sk_fit(Xs, y, C, tol=1e-4, max_iter=1000).n_iter_[0]) <= 1, C


@pytest.mark.parametrize("name", ["breastmnist", "bloodmnist"])
def test_solver_matches_sklearn_on_medmnist(medmnist_root: Path, name: str) -> None:
    data = np.load(medmnist_root / f"{name}.npz")
    rng = np.random.default_rng(0)
    keep = np.sort(rng.permutation(len(data["train_labels"]))[:2000])  # all 546 BreastMNIST rows
    images = np.concatenate([data["train_images"][keep], data["test_images"][:1000]])
    pixels = images.reshape(images.shape[0], -1) / 255.0
    y = np.concatenate([data["train_labels"][keep], data["test_labels"][:1000]])[:, 0]
    n_tr = keep.size
    # BreastMNIST: raw pixels (546 rows, 784 features); BloodMNIST: a fixed random projection to 64.
    X = pixels if name == "breastmnist" else pixels @ rng.normal(size=(pixels.shape[1], 64)) / 8.0
    _agree_with_sklearn(X.astype(np.float32), y, np.arange(n_tr), np.arange(n_tr, y.size), tol=1e-4, reference_tol=1e-4)


def test_batched_solve_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(1)
    problems = []
    for i, C in enumerate((0.03, 1.0, 30.0, 0.3, 3.0)):
        rows = np.sort(rng.choice(600, 40 + 70 * i, replace=False))
        y = Y5[rows] if i != 3 else np.where(Y5[rows] < 2, 1, 3)  # problem 3: binary on classes 1 and 3
        problems.append(LinearProblem(rows=rows, y=y, C=C))
    problems.append(LinearProblem(rows=problems[0].rows, y=problems[0].y, C=10.0))  # shares a group
    together = solve_logistic_batch(X5, problems, n_classes=5, device="cpu")
    one_chunk_per_group = solve_logistic_batch(X5, problems, n_classes=5, device="cpu", batch_memory_mb=1)
    for p, sol, chunked in zip(problems, together, one_chunk_per_group, strict=True):
        np.testing.assert_allclose(sol.coef, chunked.coef, rtol=1e-6, atol=1e-9)
        (alone,) = solve_logistic_batch(X5, [p], n_classes=5, device="cpu")
        np.testing.assert_array_equal(sol.classes, alone.classes)
        np.testing.assert_allclose(sol.coef, alone.coef, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(sol.intercept, alone.intercept, rtol=1e-6, atol=1e-9)
        assert sol.objective == pytest.approx(alone.objective, rel=1e-10)
        assert (sol.n_iter, sol.converged) == (alone.n_iter, alone.converged)
    assert together[3].coef.shape == (1, 64) and together[3].classes.tolist() == [1, 3]


def test_row_space_solve_equals_feature_space_solve() -> None:
    spans = ((0, 24, 0.1), (50, 36, 10.0), (50, 36, 0.5))  # two groups of different sizes: padding
    problems = [LinearProblem(rows=np.arange(k, k + m), y=Y5[k : k + m], C=C) for k, m, C in spans]
    dual = solve_logistic_batch(X5, problems, n_classes=5, device="cpu", row_space=True)
    primal = solve_logistic_batch(X5, problems, n_classes=5, device="cpu", row_space=False)
    for a, b in zip(dual, primal, strict=True):
        assert a.objective == pytest.approx(b.objective, rel=1e-9)
        np.testing.assert_allclose(a.coef, b.coef, rtol=1e-6, atol=1e-8)
        assert abs(a.n_iter - b.n_iter) <= 1


@pytest.mark.parametrize("row_space", [True, False])
@pytest.mark.parametrize("k", [2, 5])
def test_warm_start_from_a_solution_of_the_same_rows(row_space: bool, k: int) -> None:
    """A problem started at its own solution stops at once there; at another C it reaches the cold optimum."""
    rows = np.flatnonzero(Y5[:120] < k)
    cold = LinearProblem(rows=rows, y=Y5[rows], C=1.0)
    (a,) = solve_logistic_batch(X5, [cold], n_classes=5, device="cpu", row_space=row_space, tol=1e-8)
    (b,) = solve_logistic_batch(X5, [replace(cold, init=a)], n_classes=5, device="cpu", row_space=row_space, tol=1e-8)
    assert b.n_iter == 0 and b.converged
    np.testing.assert_allclose(b.coef, a.coef, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.intercept, a.intercept, rtol=1e-12, atol=1e-12)
    warm, far = (replace(cold, C=3.0, init=a), replace(cold, C=3.0))
    w, f = solve_logistic_batch(X5, [warm, far], n_classes=5, device="cpu", row_space=row_space, tol=1e-8)
    assert w.objective == pytest.approx(f.objective, rel=1e-9) and w.n_iter <= f.n_iter


def test_binary_objective_is_sklearns_sigmoid_not_a_two_column_softmax() -> None:
    y = (Y5[TRAIN] >= 3).astype(np.int64)
    (sol,) = solve_logistic_batch(X5, [LinearProblem(rows=TRAIN, y=y, C=0.5)], n_classes=2, device="cpu", tol=1e-8)
    (Xs,) = _standardize(X5[TRAIN])
    scale = X5[TRAIN].astype(np.float64).std(0)  # coef * scale: the standardised-space vector
    scale[scale < 1e-12] = 1.0
    clf = _sk_fit(Xs, y, 0.5)
    np.testing.assert_allclose(sol.coef * scale, clf.coef_, rtol=1e-4, atol=1e-6)
    assert sol.objective == pytest.approx(_sk_objective(clf, Xs, y, 0.5), rel=1e-6)
    # A 2-column softmax with both columns penalised is the sigmoid with C doubled: a different fit.
    doubled = _sk_fit(Xs, y, 1.0)
    assert np.abs(sol.coef * scale - doubled.coef_).max() > 100 * np.abs(sol.coef * scale - clf.coef_).max()


def test_absent_classes_get_no_column() -> None:
    rows = TRAIN[np.isin(Y5[TRAIN], (0, 2, 4))]
    problem = LinearProblem(rows=rows, y=Y5[rows], C=1.0)
    (sol,) = solve_logistic_batch(X5, [problem], n_classes=5, device="cpu", tol=1e-8)
    (Xs,) = _standardize(X5[rows])
    clf = _sk_fit(Xs, Y5[rows], 1.0)
    assert sol.classes.tolist() == [0, 2, 4] and sol.coef.shape == (3, 64)
    assert sol.objective == pytest.approx(_sk_objective(clf, Xs, Y5[rows], 1.0), rel=1e-5)


def test_sample_weights_and_raw_features_match_sklearn() -> None:
    w = np.random.default_rng(2).uniform(0.2, 3.0, TRAIN.size)
    problems = [
        LinearProblem(rows=TRAIN, y=Y5[TRAIN], C=0.3, sample_weight=w),
        LinearProblem(rows=TRAIN, y=Y5[TRAIN], C=0.3),
    ]
    weighted, raw = solve_logistic_batch(X5, problems, n_classes=5, device="cpu", standardize=False, tol=1e-8)
    Xr = X5[TRAIN].astype(np.float64)
    assert weighted.objective == pytest.approx(
        _sk_objective(_sk_fit(Xr, Y5[TRAIN], 0.3, w), Xr, Y5[TRAIN], 0.3, w), rel=1e-6
    )
    clf = _sk_fit(Xr, Y5[TRAIN], 0.3)
    assert raw.objective == pytest.approx(_sk_objective(clf, Xr, Y5[TRAIN], 0.3), rel=1e-6)
    np.testing.assert_allclose(raw.coef, clf.coef_, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("labels", [(0, 1, 2, 3, 4), (3, 7, 9, 11, 20), (4, 9)])
def test_probe_outputs_follow_sklearn_conventions(labels: tuple[int, ...]) -> None:
    y = np.asarray(labels)[Y5 % len(labels)]
    probe = LinearProbe(C=1.0, device="cpu").fit(X5[TRAIN], y[TRAIN])
    k = len(labels)
    assert probe.classes_.tolist() == list(labels) and probe.n_features_in_ == 64
    assert probe.coef_.shape == ((1 if k == 2 else k), 64) and probe.selection_ == "fixed" and probe.C_ == 1.0
    proba = probe.predict_proba(X5[TEST])
    assert proba.shape == (TEST.size, k)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert probe.decision_function(X5[TEST]).shape == ((TEST.size,) if k == 2 else (TEST.size, k))
    (Xs, Xs_te) = _standardize(X5[TRAIN], X5[TEST])
    clf = _sk_fit(Xs, y[TRAIN], 1.0)
    assert np.mean(probe.predict(X5[TEST]) == clf.predict(Xs_te)) >= 0.99
    assert probe.converged_ and probe.n_iter_ > 0
    assert probe.objective_ == pytest.approx(_sk_objective(clf, Xs, y[TRAIN], 1.0), rel=1e-3)


def _supports(shots: tuple[int, ...], seeds: int) -> list[np.ndarray]:
    out = []
    for k in shots:
        for s in range(seeds):
            rng = np.random.default_rng(100 * k + s)
            out.append(np.concatenate([rng.choice(TRAIN[Y5[TRAIN] == c], k, replace=False) for c in range(5)]))
    return out


def test_fit_linear_probes_equals_individual_fits() -> None:
    supports = _supports((1, 2, 4, 8), seeds=2)
    config = LinearProbeConfig(device="cpu", c_grid=(0.01, 0.1, 1.0, 10.0))
    probes = fit_linear_probes(X5, Y5, supports, config=config)
    selections = set()
    for rows, batched in zip(supports, probes, strict=True):
        alone = LinearProbe(**asdict(config)).fit(X5[rows], Y5[rows])
        assert (batched.C_, batched.selection_) == (alone.C_, alone.selection_)
        assert batched.cv_scores_ == pytest.approx(alone.cv_scores_)
        np.testing.assert_allclose(batched.coef_, alone.coef_, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(batched.predict(X5[TEST]), alone.predict(X5[TEST]))
        assert batched.get_params() == alone.get_params()
        selections.add(batched.selection_)
    assert selections == {f"rule:fixed-C={RULE_C:g}", "cv2-support", "cv4-support", "cv5-support"}


def test_few_shot_cv_never_reads_validation_labels() -> None:
    supports = _supports((4,), seeds=2)
    poisoned = (Y5[VAL] + 1) % 5
    config = LinearProbeConfig(device="cpu", selection="cv")
    honest = fit_linear_probes(X5, Y5, supports, X_val=X5[VAL], y_val=Y5[VAL], config=config)
    liar = fit_linear_probes(X5, Y5, supports, X_val=X5[VAL], y_val=poisoned, config=config)
    for a, b in zip(honest, liar, strict=True):
        assert a.selection_ == "cv4-support" and a.val_scores_ == {} and len(a.cv_scores_) == len(COARSE_GRID)
        assert (a.C_, a.cv_scores_) == (b.C_, b.cv_scores_)
        np.testing.assert_array_equal(a.coef_, b.coef_)
    auto = LinearProbe(device="cpu").fit(X5[supports[0]], Y5[supports[0]])
    assert auto.selection_ == "cv4-support" and auto.C_ == honest[0].C_


def test_validation_selection_is_coarse_to_fine_and_refits() -> None:
    probe = LinearProbe(device="cpu").fit(X5[TRAIN], Y5[TRAIN], X_val=X5[VAL], y_val=Y5[VAL])
    assert probe.selection_ == "val-grid" and probe.cv_scores_ == {}
    grid = sorted(probe.val_scores_)
    assert set(COARSE_GRID) <= set(grid) and len(COARSE_GRID) < len(grid) <= len(COARSE_GRID) + 4
    best = max(probe.val_scores_.values())
    assert min(C for C in grid if probe.val_scores_[C] == best) == probe.C_
    (alone,) = solve_logistic_batch(X5, [LinearProblem(rows=TRAIN, y=Y5[TRAIN], C=probe.C_)], n_classes=5, device="cpu")
    # a fine C starts from the nearest coarse solution, so it stops elsewhere within tol than a cold start
    assert probe.objective_ == pytest.approx(alone.objective, rel=1e-5)
    np.testing.assert_array_equal(probe.predict(X5[TEST]), _predict(alone, X5[TEST]))
    both = LinearProbe(device="cpu", refit="train+val").fit(X5[TRAIN], Y5[TRAIN], X_val=X5[VAL], y_val=Y5[VAL])
    assert both.C_ == probe.C_ and not np.allclose(both.coef_, probe.coef_)


def test_selection_ties_go_to_the_smaller_C_and_metrics_are_selectable() -> None:
    X, y = _blobs(200, 16, 2, sep=4.0, seed=3)  # separable: every C scores 1.0
    probe = LinearProbe(device="cpu", c_grid=[100.0, 1.0, 10.0]).fit(X[:100], y[:100], X_val=X[100:], y_val=y[100:])
    assert probe.val_scores_ == {1.0: 1.0, 10.0: 1.0, 100.0: 1.0} and probe.C_ == 1.0
    for metric in ("balanced_accuracy", "neg_log_loss"):
        p = LinearProbe(device="cpu", select_metric=metric, c_grid=[0.1, 1.0]).fit(X5[:100], Y5[:100])
        assert p.selection_ == "cv5-support" and set(p.cv_scores_) == {0.1, 1.0}
        assert all((s < 0) == (metric == "neg_log_loss") for s in p.cv_scores_.values())


def test_unconverged_fit_is_recorded_not_raised() -> None:
    probe = LinearProbe(C=10.0, max_iter=2, device="cpu").fit(X5[TRAIN], Y5[TRAIN])
    assert probe.n_iter_ == 2 and not probe.converged_


def test_probe_is_a_sklearn_estimator() -> None:
    probe = LinearProbe(C=0.5, c_grid=None, seed=3)
    assert clone(probe).get_params() == probe.get_params()
    with pytest.raises(NotFittedError, match="not fitted yet"):
        probe.predict(X5)
    fitted = probe.fit(X5[TRAIN], Y5[TRAIN])
    assert fitted is probe
    with pytest.raises(HeadError, match="has 3 features but the head was fitted on 64"):
        probe.predict(X5[:, :3])


@pytest.mark.parametrize(
    ("params", "fit_kw", "match"),
    [
        ({}, {"y": np.zeros(600, dtype=int)}, "only class 0; a linear probe needs at least two classes"),
        ({"C": 0.0}, {}, r"C must be a finite number > 0 or 'auto'; got 0.0"),
        ({"C": -1}, {}, "C must be a finite number > 0"),
        ({"C": "big"}, {}, "C='big' is not understood"),
        ({"C": 1.0, "selection": "cv"}, {}, "fixes the penalty; pass C='auto'"),
        ({"selection": "bogus"}, {}, "unknown selection 'bogus'; use one of auto, val, cv"),
        ({"select_metric": "f1"}, {}, "unknown select_metric 'f1'"),
        ({"refit": "all"}, {}, "unknown refit 'all'"),
        ({"cv_folds": 1}, {}, "cv_folds must be an int >= 2"),
        ({"c_grid": [1.0, -2.0]}, {}, "c_grid must hold finite numbers > 0"),
        ({"tol": 0}, {}, "tol must be a finite number > 0"),
        ({"precision": "half"}, {}, "unknown precision 'half'; use one of auto, float64, float32"),
        ({"selection": "val"}, {}, "selection='val' needs validation data"),
        ({"refit": "train+val"}, {}, "refit='train\\+val' needs validation data"),
        ({}, {"X_val": X5[VAL]}, "pass X_val and y_val together"),
    ],
)
def test_invalid_settings_raise_clear_errors(params: dict, fit_kw: dict, match: str) -> None:
    kw = {"X": X5, "y": Y5, **fit_kw}
    with pytest.raises(HeadError, match=match):
        LinearProbe(device="cpu", **params).fit(**kw)


def test_invalid_inputs_raise_clear_errors() -> None:
    bad = X5.copy()
    bad[7, 3] = np.nan
    with pytest.raises(HeadError, match=r"NaN/inf in 1 row\(s\) \(first: \[7\]\)"):
        LinearProbe(device="cpu").fit(bad, Y5)
    with pytest.raises(HeadError, match="support 1 holds row 600 but X has 600 rows"):
        fit_linear_probes(X5, Y5, [TRAIN, np.array([0, 600])])
    with pytest.raises(HeadError, match="support 0 holds only class 2"):
        fit_linear_probes(X5, Y5, [TRAIN[Y5[TRAIN] == 2]])
    with pytest.raises(HeadError, match="problem 0: C must be a finite number > 0"):
        solve_logistic_batch(X5, [LinearProblem(rows=TRAIN, y=Y5[TRAIN], C=0.0)], n_classes=5)
    with pytest.raises(HeadError, match=r"problem 0: y must hold one class index in \[0, 3\)"):
        solve_logistic_batch(X5, [LinearProblem(rows=TRAIN, y=Y5[TRAIN], C=1.0)], n_classes=3)
    if not torch.cuda.is_available():
        with pytest.raises(
            DeviceError,
            match=r"LinearProbe\(device='cuda'\): CUDA is not available here; use LinearProbe\(device=cpu\)",
        ):
            LinearProbe(device="cuda").fit(X5, Y5)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_float32_products_agree_with_float64(device: str) -> None:
    """The float32 path (CUDA's default) keeps the objective within 1e-3 and the predictions."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    problems = [LinearProblem(rows=TRAIN, y=Y5[TRAIN], C=C) for C in CS]
    problems.append(LinearProblem(rows=TRAIN[:40], y=Y5[TRAIN[:40]], C=1.0))  # row-space path
    exact = solve_logistic_batch(X5, problems, n_classes=5, device="cpu", precision="float64")
    fast = solve_logistic_batch(X5, problems, n_classes=5, device=device, precision="float32")
    for a, b in zip(exact, fast, strict=True):
        assert b.converged and b.objective == pytest.approx(a.objective, rel=1e-3)
        assert np.mean(_predict(a, X5[TEST]) == _predict(b, X5[TEST])) >= 0.99
    probe = LinearProbe(device=device, precision="float32", c_grid=[0.1, 1.0]).fit(X5[TRAIN], Y5[TRAIN])
    assert probe.converged_ and probe.get_params()["precision"] == "float32"


@pytest.mark.parametrize(
    ("curve", "solved"),
    [
        ({1e-4: 0.5, 1e-3: 0.7, 1e-2: 0.8, 1e-1: 0.75, 1.0: 0.7}, 5),  # turned down twice: C > 1 never solved
        ({1e-4: 0.5, 1e-3: 0.7, 1e-2: 0.8, 1e-1: 0.85, 1.0: 0.8}, 9),  # one drop only: the large Cs run
        ({1e-4: 0.5, 1e-3: 0.6, 1e-2: 0.7, 1e-1: 0.8, 1.0: 0.9}, 9),  # still rising
    ],
)
def test_the_validation_grid_skips_large_C_once_the_score_turns_down(
    curve: dict[float, float], solved: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import probe.heads._linear_selection as S

    scores = {**dict.fromkeys(S.COARSE_GRID, 0.1), **curve}
    monkeypatch.setattr(S, "_score", lambda sol, ctx, rows: scores[sol.C])
    ctx = S.Context(X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), val_rows=np.arange(2), cfg=S.LinearProbeConfig())
    path, asked = S._coarse_path(ctx, np.arange(4)), []
    request = next(path)
    try:
        while True:
            asked += request
            request = path.send(request)  # each "solution" is its problem: _score reads its C
    except StopIteration as done:
        got, _ = done.value
    assert len(asked) == solved and sorted(got) == sorted(p.C for p in asked) == sorted(S.COARSE_GRID)[:solved]


@pytest.mark.parametrize("row_space", [True, False])
def test_a_problem_with_its_own_tol_stops_there_beside_the_others(row_space: bool) -> None:
    rows = np.flatnonzero(Y5[:150] < 5)
    tight = LinearProblem(rows=rows, y=Y5[rows], C=10.0)
    loose = replace(tight, tol=1e-2)
    a, b = solve_logistic_batch(X5, [tight, loose], n_classes=5, device="cpu", row_space=row_space, tol=1e-6)
    (alone,) = solve_logistic_batch(X5, [tight], n_classes=5, device="cpu", row_space=row_space, tol=1e-2)
    assert a.converged and b.converged and b.n_iter < a.n_iter
    assert b.n_iter == alone.n_iter and b.objective == pytest.approx(alone.objective, rel=1e-12)
    with pytest.raises(HeadError, match=r"problem 0: tol must be a finite number > 0 or None; got -1"):
        solve_logistic_batch(X5, [replace(tight, tol=-1.0)], n_classes=5, device="cpu")


def test_cv_folds_rank_at_selection_tol_and_the_refit_keeps_tol(monkeypatch: pytest.MonkeyPatch) -> None:
    import probe.heads._linear_selection as S

    seen: list[tuple[int, float | None]] = []
    solve = S.solve_logistic_batch

    def spy(X: np.ndarray, problems: list[LinearProblem], **kw: object) -> list[object]:
        seen.extend((p.rows.size, p.tol) for p in problems)
        return solve(X, problems, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(S, "solve_logistic_batch", spy)
    rows = np.flatnonzero(Y5[:100] < 3)
    LinearProbe(selection_tol=1e-3, device="cpu").fit(X5[rows], Y5[rows])
    folds, refit = seen[:-1], seen[-1]
    assert folds and all(t == 1e-3 and m < rows.size for m, t in folds) and refit == (rows.size, None)
    with pytest.raises(HeadError, match=r"selection_tol must be a finite number > 0 or None \(= tol\); got 0"):
        LinearProbe(selection_tol=0).fit(X5[rows], Y5[rows])


def test_validation_grid_ranks_at_selection_tol_and_the_chosen_fit_goes_on_to_tol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import probe.heads._linear_selection as S

    seen: list[LinearProblem] = []
    solve = S.solve_logistic_batch

    def spy(X: np.ndarray, problems: list[LinearProblem], **kw: object) -> list[LinearSolution]:
        seen.extend(problems)
        return solve(X, problems, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(S, "solve_logistic_batch", spy)
    kw = {"X_val": X5[VAL], "y_val": Y5[VAL]}
    chosen = {}
    for grid in (None, (0.01, 0.1, 1.0)):
        seen.clear()
        probe = LinearProbe(selection_tol=1e-3, c_grid=grid, device="cpu").fit(X5[TRAIN], Y5[TRAIN], **kw)
        chosen[grid] = probe.C_
        *ranked, kept = seen
        assert all(p.tol == 1e-3 for p in ranked) and len(ranked) == len(probe.val_scores_)
        assert kept.C == probe.C_ and kept.tol is None and kept.init is not None
        assert np.array_equal(kept.rows, TRAIN) and probe.converged_
        (start,) = solve(X5, [replace(kept, init=None, tol=1e-3)], n_classes=5, device="cpu")
        (cold,) = solve(X5, [replace(kept, init=None)], n_classes=5, device="cpu")
        # the kept fit is the tol fit at C (within tol of a cold one), and counts its grid iterations too
        assert probe.objective_ == pytest.approx(cold.objective, rel=1e-5) and probe.n_iter_ > start.n_iter
    # on these data ranking at 1e-3 chooses the C that ranking at tol chooses
    ranked_at_tol = LinearProbe(selection_tol=None, device="cpu").fit(X5[TRAIN], Y5[TRAIN], **kw)
    assert chosen[None] == ranked_at_tol.C_
    seen.clear()
    both = LinearProbe(selection_tol=1e-3, refit="train+val", device="cpu").fit(X5[TRAIN], Y5[TRAIN], **kw)
    assert seen[-1].rows.size == TRAIN.size + VAL.size and seen[-1].tol is None and both.converged_


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_narrow_and_wide_product_orientations_agree(precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups with few score columns take the transposed products; either orientation gives the same fit."""
    import probe.heads._logistic_chunk as chunk

    binary = np.flatnonzero(Y5 < 2)[:200]
    problems = [
        LinearProblem(rows=binary, y=Y5[binary], C=1.0),  # one column
        LinearProblem(rows=TRAIN, y=Y5[TRAIN], C=0.3),  # five columns
        LinearProblem(rows=TRAIN[:60], y=Y5[TRAIN[:60]], C=3.0),  # row space, five columns
    ]
    fits = {}
    for name, width in (("narrow", 10**6), ("wide", 0)):
        monkeypatch.setattr(chunk, "NARROW_COLUMNS", width)
        fits[name] = solve_logistic_batch(X5, problems, n_classes=5, device="cpu", precision=precision)
    rel = 1e-9 if precision == "float64" else 1e-4
    for a, b in zip(fits["narrow"], fits["wide"], strict=True):
        assert a.converged and b.converged
        assert a.objective == pytest.approx(b.objective, rel=rel)
        np.testing.assert_allclose(a.coef, b.coef, rtol=1e-3 if precision == "float32" else 1e-6, atol=1e-5)
