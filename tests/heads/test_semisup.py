"""Semi-supervised heads: label spreading agrees with scikit-learn, never reads unlabelled labels, runs in curves."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import make_moons
from sklearn.semi_supervised import LabelSpreading

from probe.errors import HeadError, NotFittedError, ProtocolError
from probe.evaluate import LabelSpreadConfig, PlanConfig, build_tasks, run_plan
from probe.evaluate.data import load_eval_data
from probe.evaluate.runners import run_labelspread
from probe.heads.labelspread import LabelSpreadingProbe, _distributions, fit_label_spreading, predict_proba_shared
from probe.store import open_store

K = 7


def blobs(n: int = 300, d: int = 8, n_classes: int = 3, sep: float = 1.5, seed: int = 0):  # type: ignore[no-untyped-def]
    """Continuous Gaussian blobs (no tied similarities): (X, y, y_semi with 5 labels per class)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_classes, d)) * sep
    y = rng.integers(n_classes, size=n)
    X = (means[y] + rng.normal(size=(n, d))).astype(np.float32)
    y_semi = np.full(n, -1)
    for c in range(n_classes):
        keep = rng.choice(np.flatnonzero(y == c), 5, replace=False)
        y_semi[keep] = c
    return X, y, y_semi


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def knn_kernel(weight: str, power: float = 3.0):  # type: ignore[no-untyped-def]
    """scikit-learn callable kernel: the symmetric kNN graph W = A + A.T, brute force in float64."""

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sims = unit(a) @ unit(b).T
        np.fill_diagonal(sims, -np.inf)
        nb = np.argsort(-sims, axis=1)[:, :K]
        vals = np.ones(nb.shape) if weight == "connectivity" else np.take_along_axis(sims, nb, 1).clip(0) ** power
        A = np.zeros(sims.shape)
        np.put_along_axis(A, nb, vals, axis=1)
        return A + A.T

    return kernel


@pytest.mark.parametrize("weight", ["connectivity", "cosine"])
def test_equals_sklearn_label_spreading_on_the_same_graph(weight: str) -> None:
    """Same graph (a brute-force callable kernel): scikit-learn's iteration converges to our CG solution."""
    X, _, y_semi = blobs()
    sk = LabelSpreading(kernel=knn_kernel(weight), alpha=0.9, max_iter=5000, tol=1e-12).fit(unit(X), y_semi)
    ours = LabelSpreadingProbe(n_neighbors=K, alpha=0.9, weight=weight, class_mass=False, tol=1e-10, device="cpu").fit(
        X, y_semi
    )
    assert ours.converged_ and ours.n_iter_ < 200
    assert_array_equal(ours.classes_, sk.classes_)
    assert_allclose(ours.label_distributions_, sk.label_distributions_, atol=1e-7)
    assert_array_equal(ours.transduction_, sk.transduction_)


def test_close_to_sklearn_knn_kernel() -> None:
    """Against ``LabelSpreading(kernel="knn")`` itself, over 5 seeded data sets: its graph is directed
    (each row's own kNN list, normalised by in-degree) where ours is symmetrised, so labels agree
    closely rather than exactly (86-99 % per set here). Both must also be far above chance (1/3)."""
    stats = []
    for seed in range(5):
        X, y, y_semi = blobs(n=600, sep=1.5, seed=seed)
        Xt = (X + np.random.default_rng(5).normal(scale=0.3, size=X.shape)).astype(np.float32)  # new rows
        # scikit-learn's kNN is Euclidean and counts the row itself: on unit rows, n_neighbors=K+1 is our K
        sk = LabelSpreading(kernel="knn", n_neighbors=K + 1, alpha=0.2, max_iter=1000, tol=1e-9).fit(unit(X), y_semi)
        ours = LabelSpreadingProbe(n_neighbors=K, alpha=0.2, weight="connectivity", class_mass=False, device="cpu")
        ours.fit(X, y_semi)
        unl = y_semi == -1
        t_sk, t_ours = sk.transduction_[unl], ours.transduction_[unl]
        p_sk, p_ours = sk.predict(unit(Xt)), ours.predict(Xt)
        pairs = [(t_sk, y[unl]), (t_ours, y[unl]), (t_sk, t_ours), (p_sk, p_ours), (p_sk, y), (p_ours, y)]
        stats.append([float((a == b).mean()) for a, b in pairs])
    acc_sk, acc_ours, agree, agree_pred, pred_sk, pred_ours = np.mean(stats, axis=0)
    assert min(acc_sk, acc_ours, pred_sk, pred_ours) > 0.85
    assert agree > 0.9 and agree_pred > 0.9 and np.min(np.array(stats)[:, 2]) > 0.8
    assert abs(acc_sk - acc_ours) < 0.03 and abs(pred_sk - pred_ours) < 0.03


def test_predict_proba_is_the_weighted_neighbour_mean() -> None:
    X, _, y_semi = blobs()
    Xq = blobs(n=40, seed=3)[0]
    probe = LabelSpreadingProbe(n_neighbors=K, device="cpu").fit(X, y_semi)
    sims = unit(Xq) @ unit(X).T
    nb = np.argsort(-sims, axis=1)[:, :K]
    w = np.take_along_axis(sims, nb, 1).clip(0) ** 3
    ref = np.einsum("qk,qkc->qc", w, probe.label_distributions_[nb]) / w.sum(1, keepdims=True)
    assert_allclose(probe.predict_proba(Xq), ref, atol=1e-5)
    assert_array_equal(probe.predict(Xq), probe.classes_[ref.argmax(1)])


def test_moons_one_label_per_class_beats_supervised() -> None:
    """The cluster assumption at work: one label per moon spreads to the whole moon; a linear probe
    or a 1-NN on the two labels cannot follow the curved boundary."""
    from probe.heads.linear import LinearProbe

    X, y = make_moons(400, noise=0.05, random_state=0)
    X = np.c_[X, np.full(len(X), 2.0)].astype(np.float32)  # offset: cosine neighbours ≈ Euclidean ones
    y_semi = np.full(len(y), -1)
    y_semi[[np.flatnonzero(y == 0)[0], np.flatnonzero(y == 1)[0]]] = [0, 1]
    probe = LabelSpreadingProbe(n_neighbors=10, device="cpu").fit(X, y_semi)
    labelled = y_semi >= 0
    lin = LinearProbe(C=1.0, device="cpu").fit(X[labelled], y[labelled])
    assert (probe.transduction_ == y).mean() > 0.97
    assert (lin.predict(X) == y).mean() < 0.9


def test_batched_equals_single_and_ignores_other_labels() -> None:
    X, y, _ = blobs()
    rng = np.random.default_rng(1)
    supports = [np.sort(rng.choice(len(y), m, replace=False)) for m in (6, 20, 60)]
    est = LabelSpreadingProbe(n_neighbors=K, device="cpu")
    many = fit_label_spreading(X, y, supports, estimator=est)
    poisoned = (y + 1) % 3  # every label outside the supports is wrong
    for s in supports:
        poisoned[s] = y[s]
    liar = fit_label_spreading(X, poisoned, supports, estimator=est)
    Xq = blobs(n=50, seed=2)[0]
    for s, p, q, proba in zip(supports, many, liar, predict_proba_shared(many, Xq), strict=True):
        y_semi = np.full(len(y), -1)
        y_semi[s] = y[s]
        one = clone(est).fit(X, y_semi)
        assert_allclose(p.label_distributions_, one.label_distributions_, atol=1e-6)
        assert_allclose(proba, one.predict_proba(Xq), atol=1e-6)
        assert_array_equal(p.label_distributions_, q.label_distributions_)
        assert p.n_labeled_ == s.size and p.index_ is many[0].index_
    assert est.get_params() == LabelSpreadingProbe(n_neighbors=K, device="cpu").get_params()
    assert not hasattr(est, "classes_")  # the template is left unfitted


def test_class_mass_rescales_columns_to_labelled_shares() -> None:
    F = np.array([[4.0, 1.0], [4.0, 0.0], [2.0, 1.0], [0.0, 0.0]])
    out = _distributions(F, np.array([0.5, 0.5]))
    # columns scaled to 0.5 / 10 and 0.5 / 2 before the row normalisation; no mass → uniform
    assert_allclose(out, np.array([[0.2 / 0.45, 0.25 / 0.45], [1, 0], [0.1 / 0.35, 0.25 / 0.35], [0.5, 0.5]]))
    assert_allclose(_distributions(F, None)[0], [0.8, 0.2])


def test_estimator_contract_and_errors() -> None:
    X, _, y_semi = blobs(n=60)
    probe = LabelSpreadingProbe(n_neighbors=5, device="cpu")
    with pytest.raises(NotFittedError, match="not fitted"):
        probe.predict(X)
    assert probe.fit(X, y_semi) is probe and probe.n_features_in_ == 8
    back = pickle.loads(pickle.dumps(probe))
    assert_array_equal(back.predict_proba(X), probe.predict_proba(X))
    cases: list[tuple[dict[str, object], np.ndarray, str]] = [
        ({"n_neighbors": 60}, y_semi, "n_neighbors=60"),
        ({"alpha": 1.0}, y_semi, "alpha must lie in"),
        ({"weight": "gauss"}, y_semi, "unknown weight 'gauss'"),
        ({}, np.full(60, -1), "no labelled row"),
        ({}, np.where(y_semi < 0, -2, y_semi), "label -2"),
        ({}, y_semi[:10], "one label per row"),
    ]
    for params, labels, match in cases:
        with pytest.raises(HeadError, match=match):
            LabelSpreadingProbe(device="cpu", **{"n_neighbors": 5, **params}).fit(X, labels)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match=r"LabelSpreadConfig\(alpha=1.5\)"):
        LabelSpreadConfig(alpha=1.5)


def test_curve_rows_and_unlabelled_labels_never_read(synth_store: str) -> None:
    data = load_eval_data(open_store(synth_store))
    plan = PlanConfig(heads=("labelspread", "linear"), shots=(1, 4, "all"), seeds=2, bootstrap=20)
    rows = [r for r in run_plan(data, plan) if r.metric == "accuracy"]
    spread = [r for r in rows if r.head_name == "labelspread"]
    linear = {(r.shots, r.seed): r for r in rows if r.head_name == "linear"}
    assert len(spread) == 5
    for r in spread:
        assert r.sample_digest == linear[(r.shots, r.seed)].sample_digest  # the same draws as the other heads
        assert r.params["n_unlabeled"] == data.train.n - r.n_train and r.params["converged"]
        assert r.params["alpha"] == 0.99 and r.params["n_neighbors"] == 20
    assert next(r for r in spread if r.shots == 4).value > 0.8  # 4 Gaussian classes, separable
    # poison every train label outside the draws: the probabilities must not move
    tasks = build_tasks(data, replace(plan, shots=(1, 4)))
    drawn = np.unique(np.concatenate([t.draw.rows for t in tasks]))
    outside = np.setdiff1d(np.arange(data.train.n), drawn)
    assert outside.size > 100
    y_bad = data.train.y.copy()
    y_bad[outside] = (y_bad[outside] + 1) % data.n_classes
    clean = run_labelspread(data, tasks, plan)
    liar = run_labelspread(replace(data, train=replace(data.train, y=y_bad)), tasks, plan)
    for a, b in zip(clean, liar, strict=True):
        assert_array_equal(a.proba, b.proba)
    # ...while a poisoned *drawn* label does move them (the check above can fail)
    y_bad[drawn] = (y_bad[drawn] + 1) % data.n_classes
    moved = run_labelspread(replace(data, train=replace(data.train, y=y_bad)), tasks, plan)
    assert any(not np.array_equal(a.proba, b.proba) for a, b in zip(clean, moved, strict=True))


def test_cli_curve_and_report_show_labelspread(image_folder: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    common = ["--store-root", str(tmp_path / "emb")]
    args = ["curve", f"folder:{image_folder}", "--backbone", "timm:test_vit", "--random-weights", *common]
    args += ["--heads", "labelspread,linear", "--shots", "1,2", "--seeds", "2", "--spread-neighbors", "4"]
    args += ["--spread-alpha", "0.9", "--results", str(tmp_path / "res"), "--bootstrap", "20", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [r for r in json.loads(res.stdout)["results"] if r["head_name"] == "labelspread"]
    assert rows and {r["params"]["n_neighbors"] for r in rows} == {4} and rows[0]["params"]["alpha"] == 0.9
    assert {r["params"]["n_unlabeled"] for r in rows if r["shots"] == 1} == {10}  # 12 train images, 2 labelled
    res = runner.invoke(app, ["report", str(tmp_path / "res"), "--out", str(tmp_path / "rep"), "--json"])
    assert res.exit_code == 0, res.output
    html = Path(json.loads(res.stdout)["html"]).read_text()
    assert "labelspread" in html and "linear" in html
    bad = runner.invoke(app, [*args[:-1], "--spread-alpha", "1.5"])
    assert bad.exit_code == 1 and bad.output.startswith("error: ") and "--spread-alpha 1.5" in bad.output
