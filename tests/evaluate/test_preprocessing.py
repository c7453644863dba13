"""Feature preprocessing policies: train-split feature statistics only, recorded in every row."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from probe.errors import ProtocolError
from probe.evaluate import PlanConfig, run_plan
from probe.evaluate.data import load_eval_data
from probe.evaluate.preprocessing import POLICIES, transform_pools
from probe.evaluate.sampling import CapWarning
from probe.store import open_store
from tests.conftest import gaussian_features, write_feature_store


def _data(tmp_path: Path):  # type: ignore[no-untyped-def]
    X, y, s = gaussian_features({"train": 12, "val": 4, "test": 6}, dim=8)
    return load_eval_data(open_store(write_feature_store(tmp_path, X + 5.0, y, s)))


def test_pool_statistics_come_from_train_features_only(tmp_path: Path) -> None:
    data = _data(tmp_path)
    mean, std = data.train.X.mean(0, dtype=np.float64), data.train.X.std(0, dtype=np.float64)
    z = transform_pools(data, "pool-standardise")
    assert_allclose(z.train.X, (data.train.X - mean) / std, atol=1e-5)
    assert_allclose(z.test.X, (data.test.X - mean) / std, atol=1e-5)  # test rows use the train statistics
    c = transform_pools(data, "pool-centre-l2")
    assert_allclose(np.linalg.norm(c.test.X, axis=1), 1.0, atol=1e-5)
    assert_allclose(c.test.X[0], (data.test.X[0] - mean) / np.linalg.norm(data.test.X[0] - mean), atol=1e-5)
    # other val/test features, or other labels, change nothing in the train split's transform
    moved = replace(data, test=replace(data.test, X=data.test.X * 100), train=replace(data.train, y=data.train.y[::-1]))
    assert_allclose(transform_pools(moved, "pool-centre-l2").train.X, c.train.X)
    assert transform_pools(data, "support") is data


@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "auto"])
def test_rows_record_the_policy(policy: str, tmp_path: Path) -> None:
    plan = PlanConfig(heads=("linear", "labelspread"), shots=(2,), seeds=1, bootstrap=0, preprocessing=policy)
    rows = run_plan(_data(tmp_path), plan)
    assert rows and all(r.params["preprocessing"] == r.setup["preprocessing"] == policy for r in rows)
    assert all(r.params["standardize"] == (policy == "support") for r in rows if r.head_name == "linear")


def test_unknown_policy_is_named() -> None:
    with pytest.raises(
        ProtocolError, match=r"PlanConfig\(preprocessing='zscore'\) is unknown; use one of auto, support"
    ):
        PlanConfig(preprocessing="zscore")


def test_auto_is_pool_centre_l2_for_few_shot_linear_and_support_elsewhere(tmp_path: Path) -> None:
    from probe.evaluate.preprocessing import resolve_policy

    assert resolve_policy("auto", shots=1) == resolve_policy("auto", shots=32) == "pool-centre-l2"
    assert resolve_policy("auto", shots=64) == "pool-standardise"
    assert resolve_policy("auto", shots="all") == "support"
    assert resolve_policy("auto", shots=2, head="labelspread") == "support"
    assert resolve_policy("pool-standardise", shots="all") == "pool-standardise"
    plan = PlanConfig(heads=("linear",), shots=(2, 64, "all"), seeds=1, bootstrap=0)
    assert plan.preprocessing == "auto"  # the default
    with pytest.warns(CapWarning):
        rows = run_plan(_data(tmp_path), plan)
    used = {str(r.shots): r.params["preprocessing"] for r in rows}
    assert used == {"2": "pool-centre-l2", "64": "pool-standardise", "all": "support"}
    assert {r.setup["preprocessing"] for r in rows} == {"auto"}  # one setup: one curve
