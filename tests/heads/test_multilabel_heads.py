"""Multi-label heads: one-vs-rest linear vs scikit-learn, kNN vs brute force, prototypes vs PrototypeProbe."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from probe.errors import HeadError, NotFittedError
from probe.heads.linear import LinearProbe, LinearProbeConfig
from probe.heads.multilabel import MultiLabelKNNProbe, MultiLabelPrototypeProbe
from probe.heads.multilabel_linear import MultiLabelLinearProbe, fit_multilabel_linear_probes
from probe.heads.prototype import PrototypeProbe
from tests.multilabel_synth import make_multilabel

X, Y, TRUTH = make_multilabel(500, uncertain=0.08, seed=0)
TR, TE = np.arange(350), np.arange(350, 500)
GRID = (0.01, 0.1, 1.0, 10.0)


@pytest.mark.parametrize("C", [0.05, 1.0])
def test_linear_matches_per_label_sklearn(C: float) -> None:
    """Each label: LogisticRegression on its known rows, standardised with their statistics."""
    probe = MultiLabelLinearProbe(C=C, tol=1e-8, max_iter=5000, device="cpu").fit(X[TR], Y[TR])
    proba = probe.predict_proba(X[TE])
    assert proba.shape == (TE.size, 4) and probe.converged_.all() and not probe.degenerate_.any()
    for j in range(4):
        known = Y[TR, j] >= 0
        scaler = StandardScaler().fit(X[TR][known])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref = LogisticRegression(C=C, tol=1e-10, max_iter=20000).fit(
                scaler.transform(X[TR][known]), Y[TR][known, j]
            )
        assert np.abs(ref.predict_proba(scaler.transform(X[TE]))[:, 1] - proba[:, j]).max() < 2e-3, j
    assert_allclose(probe.C_, C)
    assert_allclose(probe.predict(X[TE]), (proba >= 0.5).astype(int))


def test_linear_selects_c_per_label_like_the_single_label_probe() -> None:
    """C = "auto": every label's CV (and val grid) is LinearProbe's, run on that label alone."""
    opts = {"c_grid": GRID, "select_metric": "neg_log_loss", "device": "cpu"}
    tr, va = np.arange(150), np.arange(150, 250)
    ml = MultiLabelLinearProbe(**opts).fit(X[tr], Y[tr])
    ml_val = MultiLabelLinearProbe(**opts).fit(X[tr], Y[tr], X_val=X[va], Y_val=Y[va])
    for j in (0, 3):  # an independent label and the one correlated with label 0
        k, kv = Y[tr, j] >= 0, Y[va, j] >= 0
        single = LinearProbe(**opts).fit(X[tr][k], Y[tr][k, j])
        assert ml.C_[j] == single.C_ and ml.selection_[j] == single.selection_ == "cv5-support"
        assert_allclose(ml.predict_proba(X[TE])[:, j], single.predict_proba(X[TE])[:, 1], atol=1e-6)
        single_val = LinearProbe(**opts).fit(X[tr][k], Y[tr][k, j], X_val=X[va][kv], y_val=Y[va][kv, j])
        assert ml_val.C_[j] == single_val.C_ and ml_val.selection_[j] == "val-grid"


def test_batched_supports_equal_separate_fits_and_degenerate_labels() -> None:
    supports = [np.arange(0, 12), np.arange(40, 120), np.array([0, 1, 2])]
    y = Y.copy()
    y[:3, 2] = 0  # support 3: label 2 has no positive there
    config = LinearProbeConfig(c_grid=GRID, select_metric="neg_log_loss", device="cpu")
    probes = fit_multilabel_linear_probes(X, y, supports, config=config)
    for rows, batched in zip(supports, probes, strict=True):
        alone = MultiLabelLinearProbe(c_grid=GRID, select_metric="neg_log_loss", device="cpu").fit(X[rows], y[rows])
        assert_allclose(batched.predict_proba(X[TE]), alone.predict_proba(X[TE]), atol=1e-6)
        assert batched.selection_ == alone.selection_
    last = probes[2]
    assert last.degenerate_[2] and last.selection_[2] == "constant" and np.isnan(last.C_[2])
    known = y[:3, 2] >= 0
    assert_allclose(last.predict_proba(X[TE])[:, 2], 0.5 / (known.sum() + 1.0))  # smoothed rate of no positive


def _brute_knn(xq: np.ndarray, xb: np.ndarray, yb: np.ndarray, k: int, T: float, *, exclude_self: bool = False):  # type: ignore[no-untyped-def]
    """Loops over queries and labels: the positive share of the temperature-weighted votes of known entries."""
    q = xq / np.linalg.norm(xq, axis=1, keepdims=True)
    b = xb / np.linalg.norm(xb, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ b.T.astype(np.float64)
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    prior = ((yb == 1).sum(0) + 0.5) / ((yb >= 0).sum(0) + 1.0)
    out = np.zeros((xq.shape[0], yb.shape[1]))
    for i in range(xq.shape[0]):
        nn = np.argsort(-sims[i], kind="stable")[:k]
        w = np.exp((sims[i, nn] - sims[i, nn].max()) / T)
        for j in range(yb.shape[1]):
            known = yb[nn, j] >= 0
            out[i, j] = (w * known * (yb[nn, j] == 1)).sum() / (w * known).sum() if known.any() else prior[j]
    return out


def test_knn_matches_brute_force_including_ignored_entries_and_loo() -> None:
    xb, yb = X[:120], Y[:120].copy()
    yb[:, 3] = -1
    yb[:5, 3] = [1, 0, 1, 0, 0]  # label 3: almost every neighbour ignores it, so queries fall back to the prior
    probe = MultiLabelKNNProbe(k=[5, 15], device="cpu").fit(xb, yb)
    got = probe.predict_proba_all(X[TE])
    for k in (5, 15):
        assert_allclose(got[k], _brute_knn(X[TE], xb, yb, k, 0.07), atol=1e-6)
    loo = probe.loo_proba_all()
    assert_allclose(loo[5], _brute_knn(xb, xb, yb, 5, 0.07, exclude_self=True), atol=1e-6)
    with pytest.raises(HeadError, match="single k"):
        probe.predict_proba(X[TE])
    with pytest.raises(HeadError, match="leave-one-out with k=15"):
        MultiLabelKNNProbe(k=15, device="cpu").fit(xb[:15], yb[:15]).loo_proba_all()


def test_prototypes_equal_per_label_prototype_probe() -> None:
    full = np.where(Y < 0, TRUTH, Y)  # no ignored entries: each label is exactly a two-class prototype problem
    for method, T in (("simpleshot", 0.1), ("cosine", 0.1), ("centroid", 20.0)):
        probe = MultiLabelPrototypeProbe(method=method, temperature=T).fit(X[TR], full[TR])
        proba = probe.predict_proba(X[TE])
        for j in range(4):
            ref = PrototypeProbe(method=method, temperature=T).fit(X[TR], full[TR, j])
            assert_allclose(proba[:, j], ref.predict_proba(X[TE])[:, 1], atol=1e-10)
    masked = MultiLabelPrototypeProbe().fit(X[TR], Y[TR])
    j, known = 1, Y[TR, 1] >= 0
    x64 = X[TR].astype(np.float64)
    expect = x64[known & (Y[TR, 1] == 1)] - x64.mean(0)  # prototypes skip ignored entries
    expect = (expect / np.linalg.norm(expect, axis=1, keepdims=True)).mean(0)
    assert_allclose(masked.positive_[j], expect, atol=1e-10)  # simpleshot: class means, not re-normalised
    cosine = MultiLabelPrototypeProbe(method="cosine").fit(X[TR], Y[TR])
    assert_allclose(cosine.positive_[j], expect / np.linalg.norm(expect), atol=1e-10)
    y = Y[TR].copy()
    y[:, 0] = 0
    degenerate = MultiLabelPrototypeProbe().fit(X[TR], y)
    assert degenerate.degenerate_.tolist() == [True, False, False, False]
    assert_allclose(degenerate.predict_proba(X[TE])[:, 0], 0.5 / ((y[:, 0] >= 0).sum() + 1))


@pytest.mark.parametrize(
    "head",
    [
        MultiLabelLinearProbe(device="cpu"),
        MultiLabelKNNProbe(k=20, device="cpu"),
        MultiLabelPrototypeProbe(),
    ],
    ids=["linear", "knn", "prototype"],
)
def test_every_head_beats_chance_on_every_label(head) -> None:  # type: ignore[no-untyped-def]
    fitted = clone(head).fit(X[TR], Y[TR])
    proba = fitted.predict_proba(X[TE])
    aucs = [roc_auc_score(TRUTH[TE, j], proba[:, j]) for j in range(4)]
    assert min(aucs) > 0.75, aucs
    assert fitted.predict(X[TE]).shape == (TE.size, 4)


def test_mask_and_input_errors() -> None:
    mask = np.ones_like(Y[TR], dtype=bool)
    mask[:, 0] = np.arange(TR.size) % 2 == 0
    a = MultiLabelPrototypeProbe().fit(X[TR], Y[TR], mask=mask)
    y = Y[TR].copy()
    y[~mask] = -1
    assert_allclose(a.predict_proba(X[TE]), MultiLabelPrototypeProbe().fit(X[TR], y).predict_proba(X[TE]))
    with pytest.raises(HeadError, match="multi-label targets"):
        MultiLabelKNNProbe(device="cpu").fit(X[TR], Y[TR, 0])
    with pytest.raises(HeadError, match="holds 2"):
        MultiLabelPrototypeProbe().fit(X[TR], Y[TR] * 2)
    with pytest.raises(HeadError, match="mask must be a bool array"):
        MultiLabelLinearProbe(device="cpu").fit(X[TR], Y[TR], mask=mask[:, :2])
    with pytest.raises(NotFittedError):
        MultiLabelLinearProbe().predict_proba(X[TE])
    with pytest.raises(HeadError, match="Y_val has 2 labels"):
        MultiLabelLinearProbe(device="cpu").fit(X[TR], Y[TR], X_val=X[TE], Y_val=Y[TE, :2])
    with pytest.raises(HeadError, match="selection='val' needs validation data"):
        MultiLabelLinearProbe(selection="val", device="cpu").fit(X[TR], Y[TR])
