"""Multi-label plans: per-label and macro rows, thresholds off the test set, heads beat chance, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probe.errors import MetricError, ProtocolError
from probe.evaluate import KNNConfig, LinearConfig, PlanConfig, run_plan
from probe.evaluate.data import load_eval_data
from probe.store import open_store
from tests.conftest import write_feature_store
from tests.multilabel_synth import LABELS, make_multilabel

FAST = {"bootstrap": 50, "linear": LinearConfig(c_grid=(0.1, 1.0, 10.0))}


@pytest.fixture
def ml_store(tmp_path: Path) -> str:
    X, Y, _ = make_multilabel(600, uncertain=0.05, seed=1)
    splits = np.repeat([0, 1, 2], 200).astype(np.int8)
    return write_feature_store(tmp_path, X, Y, splits, dataset="synthml", task="multilabel", classes=list(LABELS))


def test_rows_hold_per_label_and_macro_metrics(ml_store: str) -> None:
    data = load_eval_data(open_store(ml_store))
    assert data.task == "multilabel" and data.classes == LABELS and data.train.y.shape == (200, 4)
    rows = run_plan(data, PlanConfig(heads=("knn", "prototype"), shots=(2, "all"), seeds=1, **FAST))
    metrics = {r.metric for r in rows}
    per_label = {f"{kind}[{name}]" for kind in ("auroc", "ap", "f1") for name in LABELS}
    assert metrics == {"macro_auroc", "macro_ap", "macro_f1"} | per_label
    for r in rows:
        assert r.n_classes == 4 and r.ci_low <= r.value <= r.ci_high, (r.head_name, r.metric)
        assert len(r.params["thresholds"]) == 4
        assert r.params["threshold_source"] == (
            "val" if r.protocol == "full" else "train-loo" if r.head_name == "knn-k20" else "train"
        )
    two = [r for r in rows if r.shots == 2 and r.metric == "macro_auroc"]
    y = data.train.y
    # x of a multi-label draw: the mean number of positives per label it holds
    assert all(r.labels_per_class >= 2 for r in two) and {r.sample_digest for r in two} == {two[0].sample_digest}
    full = {r.head_name: r for r in rows if r.protocol == "full" and r.metric == "macro_auroc"}
    assert full["knn-k20"].labels_per_class == pytest.approx((y == 1).sum(0).mean())
    macro = [r for r in rows if r.protocol == "full" and r.head_name == "knn-k20"]
    by = {r.metric: r.value for r in macro}
    assert by["macro_ap"] == pytest.approx(np.mean([by[f"ap[{n}]"] for n in LABELS]))


def test_every_head_beats_chance_on_every_label_with_full_data(ml_store: str) -> None:
    data = load_eval_data(open_store(ml_store))
    plan = PlanConfig(shots=("all",), seeds=1, metrics=("per_label",), knn=KNNConfig(k=(20,)), **FAST)
    rows = run_plan(data, plan)
    for r in rows:
        if r.metric.startswith("auroc["):
            assert r.value > 0.8, (r.head_name, r.metric, r.value)
    linear = next(r for r in rows if r.head_name == "linear")
    assert len(linear.params["C"]) == 4 and all(s == "val-grid" for s in linear.params["selection"])


def test_linear_few_shot_never_reads_validation_labels(ml_store: str) -> None:
    data = load_eval_data(open_store(ml_store))
    plan = PlanConfig(heads=("linear",), shots=(8,), seeds=2, metrics=("macro_auroc", "macro_f1"), **FAST)
    rows = run_plan(data, plan)
    assert {r.params["threshold_source"] for r in rows} == {"train"}
    assert all(s.endswith("-support") or s.startswith("rule:") for r in rows for s in r.params["selection"])
    scrambled = data.val
    assert scrambled is not None
    rng = np.random.default_rng(0)
    other = type(data)(
        **{**data.__dict__, "val": type(scrambled)(**{**scrambled.__dict__, "y": rng.permutation(scrambled.y)})}
    )
    again = run_plan(other, plan)
    assert [r.value for r in rows] == [r.value for r in again]


def test_multilabel_errors(ml_store: str, tmp_path: Path) -> None:
    data = load_eval_data(open_store(ml_store))
    with pytest.raises(MetricError, match="unknown multi-label metric 'accuracy'"):
        run_plan(data, PlanConfig(heads=("knn",), shots=("all",), metrics=("accuracy",), bootstrap=0))
    with pytest.raises(ProtocolError, match="'labelspread' does not support multi-label"):
        run_plan(data, PlanConfig(heads=("labelspread",), shots=("all",), bootstrap=0))
    X, Y, _ = make_multilabel(60, seed=2)
    Y[:20, :] = 0  # the train split holds no positive at all
    store = write_feature_store(
        tmp_path / "b", X, Y, np.repeat([0, 1, 2], 20).astype(np.int8), task="multilabel", classes=list(LABELS)
    )
    with pytest.raises(ProtocolError, match="no label"):
        load_eval_data(open_store(store))
