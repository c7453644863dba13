"""View fusion (numpy references), dropout masks, and modality ablation / dropout plans on a synthetic store."""

from __future__ import annotations

import numpy as np
import pytest

from probe.errors import ProtocolError
from probe.evaluate import PlanConfig, run_plan
from probe.evaluate.data import EvalData, Pool
from probe.evaluate.fusion import FUSIONS, ViewConfig, dropout_masks, fuse_views, fused_width, without_views

F = np.array(
    [
        [[1.0, 2.0], [3.0, -4.0], [np.nan, np.nan]],
        [[5.0, 0.0], [np.nan, np.nan], [np.nan, np.nan]],
        [[np.nan, np.nan], [np.nan, np.nan], [np.nan, np.nan]],
    ],
    dtype=np.float32,
)
P = np.array([[True, True, False], [True, False, False], [False, False, False]])


def test_fusions_match_numpy_references() -> None:
    mean = fuse_views(F, P, "mean")
    np.testing.assert_allclose(mean, [[2.0, -1.0], [5.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(fuse_views(F, P, "max"), [[3.0, 2.0], [5.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(fuse_views(F, P, "meanmax"), np.concatenate([mean, fuse_views(F, P, "max")], axis=1))
    concat = fuse_views(F, P, "concat")
    np.testing.assert_allclose(concat[0], [1, 2, 3, -4, 0, 0, 1, 1, 0])
    np.testing.assert_allclose(concat[1], [5, 0, 0, 0, 0, 0, 1, 0, 0])
    for m in FUSIONS:
        out = fuse_views(F, P, m)
        assert out.dtype == np.float32 and out.shape == (3, fused_width(m, 3, 2)) and np.isfinite(out).all()
    with pytest.raises(ProtocolError, match="fusion 'median' is unknown"):
        fuse_views(F, P, "median")


def test_random_masks_drop_whole_views_keep_one_and_are_seeded() -> None:
    rng = np.random.default_rng(0)
    present = rng.random((500, 4)) < 0.7
    present[0] = False
    m = dropout_masks(present, p=0.6, copies=3, seed=7)
    assert m.shape == (3, 500, 4)
    assert not (m & ~present[None]).any()  # never invents a view
    has = present.any(axis=1)
    assert (m.any(axis=2) == has[None]).all()  # at least one view kept where there was one
    kept = m.sum() / (3 * present.sum())
    assert 0.35 < kept < 0.6  # about 1 - p, plus the rescued views
    np.testing.assert_array_equal(m, dropout_masks(present, p=0.6, copies=3, seed=7))
    assert not np.array_equal(m, dropout_masks(present, p=0.6, copies=3, seed=8))
    np.testing.assert_array_equal(without_views(present, [1])[:, 1], False)


def test_view_config_errors() -> None:
    with pytest.raises(ProtocolError, match=r"ViewConfig\(fusion='sum'\) is unknown"):
        ViewConfig(fusion="sum")
    with pytest.raises(ProtocolError, match=r"ViewConfig\(modality_dropout=1.5\)"):
        ViewConfig(modality_dropout=1.5)


def _pool(views: np.ndarray, present: np.ndarray, y: np.ndarray, tag: str, fusion: str) -> Pool:
    ids = np.array([f"{tag}{i:04d}" for i in range(len(y))])
    return Pool(X=fuse_views(views, present, fusion), y=y, ids=ids, groups=None, views=views, present=present)


def _modal_data(fusion: str = "concat", seed: int = 0) -> EvalData:
    """3 modalities of 8-d features; only modality 1 ("t2") carries the class; modality 2 often missing."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(2, 8))
    pools = []
    for tag, n in (("tr", 120), ("va", 40), ("te", 120)):
        y = np.repeat([0, 1], n // 2)
        views = rng.normal(size=(n, 3, 8)).astype(np.float32)
        views[:, 1] += centres[y]
        present = np.ones((n, 3), dtype=bool)
        present[:, 2] = rng.random(n) > 0.3
        pools.append(_pool(views, present, y, tag, fusion))
    return EvalData(
        dataset="mm",
        backbone="toy",
        pooling=f"gap:{fusion}",
        store_path="-",
        store_fingerprint="f" * 64,
        classes=("a", "b"),
        task="binary",
        train=pools[0],
        val=pools[1],
        test=pools[2],
        views=("t1", "t2", "flair"),
        view_kind="modalities",
        fusion=fusion,
    )


def _by(rows: list, metric: str = "balanced_accuracy") -> dict:
    out: dict = {}
    for r in rows:
        if r.metric == metric:
            out.setdefault((r.head_name.replace("knn-k20", "knn"), r.params.get("ablate")), []).append(r.value)
    return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.parametrize(
    ("fusion", "heads"), [("concat", ("knn", "linear", "prototype")), ("mean", ("knn", "prototype"))]
)
def test_ablation_rows_show_the_signal_modality(fusion: str, heads: tuple[str, ...]) -> None:
    plan = PlanConfig(heads=heads, shots=(8, "all"), seeds=1, bootstrap=0)
    rows = run_plan(_modal_data(fusion), plan)
    scores = _by(rows)
    for head in heads:
        assert scores[(head, None)] > 0.95
        assert scores[(head, "t1")] > 0.9 and scores[(head, "flair")] > 0.9
        assert abs(scores[(head, "t2")] - 0.5) < 0.15  # the signal modality removed: chance
    assert {r.pooling for r in rows} == {f"gap:{fusion}"}
    # same draws for the stored and the ablated scores: ablation changes only the test inputs
    base = {(r.head_name, r.seed, r.shots, r.sample_digest) for r in rows if "ablate" not in r.params}
    cut = {(r.head_name, r.seed, r.shots, r.sample_digest) for r in rows if r.params.get("ablate") == "t2"}
    assert base == cut
    assert not any(r.params.get("ablate") for r in run_plan(_modal_data(fusion), _no_ablation(plan)))


def _no_ablation(plan: PlanConfig) -> PlanConfig:
    from dataclasses import replace

    return replace(plan, views=ViewConfig(ablate=False))


def test_modality_dropout_makes_the_linear_head_robust_to_a_missing_modality() -> None:
    """Two redundant signal modalities: without dropout the head may lean on either; with it, on both."""
    data = _modal_data("concat", seed=3)
    rng = np.random.default_rng(1)
    for pool in (data.train, data.val, data.test):
        assert pool.views is not None
        pool.views[:, 0] = pool.views[:, 1] + rng.normal(0, 2.0, size=pool.views[:, 1].shape)  # a noisy copy
    plain = _by(run_plan(data, PlanConfig(heads=("linear",), shots=("all",), seeds=1, bootstrap=0)))
    views = ViewConfig(modality_dropout=0.5, dropout_copies=2)
    dropped_plan = PlanConfig(heads=("linear",), shots=("all", 8), seeds=1, bootstrap=0, views=views)
    rows = run_plan(data, dropped_plan)
    dropped = _by([r for r in rows if r.shots == "all"])
    assert {r.head_name for r in rows} == {"linear-mdrop0.5"}
    p = next(r.params for r in rows if r.shots == 8)
    assert p["modality_dropout"] == 0.5 and p["dropout_copies"] == 2 and p["n_train_augmented"] == 3 * 16
    assert "without dropout copies" in p["selection"]
    setup = next(r.setup for r in rows if r.shots == 8)  # the row's setup names the dropout head's settings
    assert setup["modality_dropout"] == 0.5 and setup["dropout_copies"] == 2 and setup["preprocessing"] == "support"
    assert setup["C"] == "auto" and setup["precision"] == "float32"
    assert next(r.n_train for r in rows if r.shots == 8) == 16  # n_train counts samples, not copies
    assert plain[("linear", None)] > 0.95 and plain[("linear", "t2")] < 0.85  # leans on t2
    assert dropped[("linear-mdrop0.5", None)] > 0.95 and dropped[("linear-mdrop0.5", "t2")] > 0.95


def test_dropout_on_a_slice_store_is_an_error() -> None:
    data = _modal_data("mean")
    from dataclasses import replace

    slices = replace(data, view_kind="slices")
    with pytest.raises(ProtocolError, match=r"ViewConfig\(modality_dropout=0.3\) applies to multi-modal stores"):
        run_plan(slices, PlanConfig(heads=("linear",), shots=("all",), seeds=1, views=ViewConfig(modality_dropout=0.3)))
    rows = run_plan(slices, PlanConfig(heads=("knn",), shots=("all",), seeds=1, bootstrap=0))
    assert rows and not any("ablate" in r.params for r in rows)  # slices are never ablated
