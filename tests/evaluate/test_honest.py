"""Honest numbers: intervals clipped to the metric's range, flagged below 5 seeds; degenerate features flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probe.evaluate import PlanConfig, run_plan
from probe.evaluate.data import DEGENERATE, DegenerateFeaturesWarning, load_eval_data
from probe.metrics import mean_ci, metric_range
from probe.report.data import summarise
from probe.report.summary import format_table
from probe.store import open_store
from tests.conftest import gaussian_features, write_feature_store


def test_student_t_interval_is_clipped_to_the_metric_range() -> None:
    values = [0.2, 0.95]  # two seeds: t(0.975, 1) = 12.7 makes the raw interval [-4.2, 5.4]
    raw = mean_ci(values)
    assert raw[1] < 0 and raw[2] > 1
    assert mean_ci(values, bounds=metric_range("balanced_accuracy")) == (pytest.approx(0.575), 0.0, 1.0)
    assert mean_ci([-0.5, 0.9], bounds=metric_range("mcc"))[1:] == (-1.0, 1.0)


def test_report_and_table_clip_and_flag_few_seeds() -> None:
    rows = [
        {"dataset": "d", "backbone": "b", "pooling": "gap", "head_name": "linear", "regime": "", "level": "1", "x": 1.0,
         "seed": s, "value": v, "ci_low": np.nan, "ci_high": np.nan, "series": "b · linear", "metric": "accuracy"}
        for s, v in enumerate([0.2, 0.95])
    ]  # fmt: skip
    summary = summarise(pd.DataFrame(rows))
    assert (summary["ci_low"].iloc[0], summary["ci_high"].iloc[0]) == (0.0, 1.0)
    assert bool(summary["few_seeds"].iloc[0])
    five = summarise(pd.DataFrame([{**rows[0], "seed": s, "value": 0.5 + 0.01 * s} for s in range(5)]))
    assert not bool(five["few_seeds"].iloc[0])
    records = [{**r, "protocol": "shots", "shots": 1, "labels_per_class": 1.0} for r in rows]
    assert "57.5 [0.0, 100.0]‡" in format_table(records, metric="accuracy")


def test_degenerate_features_warn_once_and_flag_every_row(tmp_path: Path) -> None:
    X, y, s = gaussian_features({"train": 10, "val": 4, "test": 6}, dim=16)
    X[:, 2:] = 0.0  # 14 of 16 columns constant, like a backbone fed images far below its input size
    store = open_store(write_feature_store(tmp_path, X, y, s))
    with pytest.warns(DegenerateFeaturesWarning, match=r"87.5% of the feature columns are constant; likely cause"):
        data = load_eval_data(store)
    assert data.flags == (DEGENERATE,)
    rows = run_plan(data, PlanConfig(heads=("prototype",), shots=(2,), seeds=1, bootstrap=0))
    assert rows and all(r.flags == (DEGENERATE,) for r in rows)
    same = np.ones_like(X)
    store = open_store(write_feature_store(tmp_path / "same", same, y, s))
    with pytest.warns(DegenerateFeaturesWarning, match="every train row is identical"):
        assert load_eval_data(store).flags == (DEGENERATE,)
    healthy = open_store(
        write_feature_store(tmp_path / "ok", gaussian_features({"train": 10, "val": 4, "test": 6})[0], y, s)
    )
    assert load_eval_data(healthy).flags == ()
