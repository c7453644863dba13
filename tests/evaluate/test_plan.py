"""Plans on stored features: row schema, pairing across heads and backbones, caps, episodes, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probe.errors import HeadError, MetricError, ProtocolError, StoreError, UnknownHeadError
from probe.evaluate import KNNConfig, PlanConfig, run_plan
from probe.evaluate.data import find_store, load_eval_data
from probe.evaluate.sampling import CapWarning
from probe.results import REQUIRED_FIELDS
from probe.store import open_store
from tests.conftest import gaussian_features, write_feature_store

REQUIRED = REQUIRED_FIELDS
FAST = {"bootstrap": 50, "metrics": ("accuracy", "balanced_accuracy", "macro_auroc")}


def _data(store: str):  # type: ignore[no-untyped-def]
    return load_eval_data(open_store(store))


def test_rows_schema_and_levels(synth_store: str) -> None:
    plan = PlanConfig(heads=("knn", "prototype"), shots=(1, 4, "all"), seeds=2, knn=KNNConfig(k=(3, 20)), **FAST)
    rows = [r.to_dict() for r in run_plan(_data(synth_store), plan)]
    assert all(set(r) >= REQUIRED for r in rows)
    heads = {r["head_name"] for r in rows}
    assert heads == {"knn-k3", "knn-k20", "prototype"}
    one = [r for r in rows if r["head_name"] == "knn-k20" and r["shots"] == 1 and r["metric"] == "accuracy"]
    assert [r["seed"] for r in one] == [0, 1] and all(r["n_train"] == 4 for r in one)
    assert one[0]["params"]["k"] == 4 and one[0]["params"]["k_requested"] == 20  # capped at the draw, recorded
    full = [r for r in rows if r["shots"] == "all" and r["metric"] == "accuracy"]
    assert len(full) == 3 and {r["protocol"] for r in full} == {"full"} and full[0]["n_train"] == 160
    for r in rows:
        assert r["ci_low"] <= r["value"] <= r["ci_high"]


def test_same_draws_for_every_head_and_backbone(tmp_path: Path) -> None:
    """Curves are paired: the same seed and shots give the same sample ids whatever the features."""
    X, y, s = gaussian_features({"train": 30, "val": 5, "test": 10}, seed=1)
    other = np.random.default_rng(9).normal(size=(X.shape[0], 7)).astype(np.float32)
    a = write_feature_store(tmp_path, X, y, s, backbone="a")
    b = write_feature_store(tmp_path, other, y, s, backbone="b")
    plan = PlanConfig(heads=("knn", "prototype"), shots=(2, 8), seeds=3, **FAST)
    digests: dict[tuple[object, ...], set[str]] = {}
    for store in (a, b):
        for r in run_plan(_data(store), plan):
            digests.setdefault((r.shots, r.seed), set()).add(r.sample_digest)
    assert len(digests) == 6 and all(len(d) == 1 for d in digests.values())
    assert len({next(iter(d)) for d in digests.values()}) == 6  # and different seeds differ


def test_episodes_and_fractions(synth_store: str) -> None:
    data = _data(synth_store)
    rows = run_plan(data, PlanConfig(heads=("prototype",), shots=(1, 5), episodes=4, queries=3, **FAST))
    acc = [r for r in rows if r.metric == "accuracy"]
    assert len(acc) == 8 and {r.protocol for r in acc} == {"episodes"}
    assert all(r.n_test == 12 and r.ci_method == f"bootstrap-{FAST['bootstrap']}" for r in acc)  # over the queries
    assert sorted({r.seed for r in acc}) == [0, 1, 2, 3]
    rows = run_plan(data, PlanConfig(heads=("knn",), shots=(), fractions=(0.1, 1.0), seeds=2, **FAST))
    n = sorted({(r.fraction, r.n_train) for r in rows})
    assert n == [(0.1, 16), (1.0, 160)]


def test_caps_recorded_or_strict(tmp_path: Path) -> None:
    X, y, s = gaussian_features({"train": 3, "val": 2, "test": 5})
    store = write_feature_store(tmp_path, X, y, s)
    with pytest.warns(CapWarning):
        rows = run_plan(_data(store), PlanConfig(heads=("prototype",), shots=(5,), seeds=1, **FAST))
    assert rows[0].params["caps"] == {0: 3, 1: 3, 2: 3, 3: 3} and rows[0].n_train == 12
    with pytest.raises(ProtocolError, match="5 shots asked"):
        run_plan(_data(store), PlanConfig(heads=("prototype",), shots=(5,), seeds=1, strict=True, **FAST))


def test_ordinal_adds_qwk(tmp_path: Path) -> None:
    X, y, s = gaussian_features({"train": 10, "val": 2, "test": 10})
    store = write_feature_store(tmp_path, X, y, s, task="ordinal")
    rows = run_plan(_data(store), PlanConfig(heads=("prototype",), shots=(2,), seeds=1, **FAST))
    assert "qwk" in {r.metric for r in rows}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seeds": 0}, ProtocolError, r"PlanConfig\(seeds=0\): use at least 1"),
        ({"heads": ("svm",)}, UnknownHeadError, "unknown head 'svm'; choose from knn"),
        ({"metrics": ("auc",)}, MetricError, "unknown metric 'auc'"),
        ({"shots": (0,)}, ProtocolError, "positive integer or 'all'"),
        ({"shots": (), "fractions": ()}, ProtocolError, "nothing to evaluate"),
    ],
)
def test_plan_errors(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        PlanConfig(**kwargs)  # type: ignore[arg-type]


def test_k_larger_than_train_via_head(synth_store: str) -> None:
    from probe.heads.knn import KNNProbe

    data = _data(synth_store)
    with pytest.raises(HeadError, match="k=500"):
        KNNProbe(k=500).fit(data.train.X, data.train.y)


def test_single_class_split_and_invalid_rows(tmp_path: Path) -> None:
    X, y, s = gaussian_features({"train": 5, "val": 2, "test": 5}, n_classes=2)
    y_one = y.copy()
    y_one[s == 2] = 0
    with pytest.raises(ProtocolError, match="test split holds a single class"):
        load_eval_data(open_store(write_feature_store(tmp_path / "a", X, y_one, s)))
    valid = np.ones(len(y), bool)
    valid[0] = False
    X_nan = X.copy()
    X_nan[0] = np.nan  # masked row: dropped and counted
    data = load_eval_data(open_store(write_feature_store(tmp_path / "b", X_nan, y, s, valid=valid)))
    assert data.train.n == 9 and data.notes["invalid_rows"] == 1
    X_bad = X.copy()
    X_bad[1, 3] = np.inf  # a valid row with inf (e.g. fp16 overflow): a clear head error
    data = load_eval_data(open_store(write_feature_store(tmp_path / "c", X_bad, y, s)))
    with pytest.raises(HeadError, match="NaN/inf in 1 row"):
        run_plan(data, PlanConfig(heads=("prototype",), shots=("all",), **FAST))


def test_store_lookup_errors(tmp_path: Path, synth_store: str) -> None:
    root = Path(synth_store).parents[1]
    assert find_store("medmnist:synth", backbone="toy", root=root).path == synth_store
    with pytest.raises(StoreError, match="no store of medmnist:synth with backbone vit.*probe extract medmnist:synth"):
        find_store("medmnist:synth", backbone="vit", root=root)
    X, y, s = gaussian_features({"train": 5, "val": 2, "test": 5})
    other = write_feature_store(root, X, y, s)
    with pytest.raises(StoreError, match=r"several stores .*StoreChoice\(store=PATH\)"):
        find_store("medmnist:synth@28", backbone="toy", root=root)
    import zarr

    zarr.open_group(other, mode="r+").attrs.update({"complete": False, "state": "extracting"})
    assert find_store("medmnist:synth", backbone="toy", root=root).path == synth_store
    zarr.open_group(synth_store, mode="r+").attrs.update({"complete": False, "state": "extracting"})
    with pytest.raises(StoreError, match="is incomplete; resume it: probe extract"):
        find_store("medmnist:synth", backbone="toy", root=root)


@pytest.mark.parametrize("bad", [0, -1e-4, float("nan"), "3e-4", True])
def test_a_bad_selection_tol_is_refused_when_the_plan_is_made(bad: object) -> None:
    from probe.errors import ProtocolError
    from probe.evaluate.config import LinearConfig

    with pytest.raises(ProtocolError, match=r"LinearConfig\(selection_tol=.*\) must be a number > 0 \(e\.g\. 3e-4\)"):
        LinearConfig(selection_tol=bad)  # type: ignore[arg-type]
    assert LinearConfig(selection_tol=None).selection_tol is None
