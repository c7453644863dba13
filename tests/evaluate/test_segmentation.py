"""The segmentation task kind: draws of labelled units (images or volumes), nested and seeded, and the
validation split read only by the full-data setting."""

from __future__ import annotations

import dataclasses

import numpy as np

from probe.evaluate.config import PlanConfig
from probe.evaluate.data import EvalData, Pool
from probe.evaluate.kinds import task_kind
from probe.evaluate.plan import run_plan
from probe.evaluate.tasks import build_tasks


def _data(*, volumes: bool, seed: int = 0) -> EvalData:
    rng = np.random.default_rng(seed)

    def pool(n_units: int, per_unit: int, name: str) -> Pool:
        n = n_units * per_unit
        y = np.zeros((n, 8, 8), dtype=np.uint8)
        y[:, 2:6, 2:6] = rng.integers(1, 3, size=n)[:, None, None]
        X = rng.normal(size=(n, 2, 2, 4)).astype(np.float32)
        X[..., 0] += 3 * (y[:, ::4, ::4] > 0) * (y[:, ::4, ::4] == 2)  # a feature that tells class 2 apart
        units = np.repeat([f"{name}{u}" for u in range(n_units)], per_unit)
        ids = np.array([f"{u}#{k}" for u, k in zip(units, np.tile(np.arange(per_unit), n_units), strict=True)])
        return Pool(X=X, y=y, ids=ids if volumes else units, groups=None, units=units if volumes else None)

    per_unit = 3 if volumes else 1
    return EvalData(
        dataset="synthetic", backbone="b", pooling="patch", store_path="", store_fingerprint="f",
        classes=("background", "a", "b"), task="segmentation", train=pool(12, per_unit, "tr"),
        val=pool(3, per_unit, "va"), test=pool(4, per_unit, "te"), notes={"unit": "volume" if volumes else "image"},
    )  # fmt: skip


def test_draws_count_units_are_nested_and_seeded() -> None:
    data = _data(volumes=True)
    plan = PlanConfig(heads=("seg-knn",), shots=(1, 2, 4, "all"), seeds=2)
    tasks = build_tasks(data, plan)
    kind = task_kind(data)
    levels = [(t.draw.seed, t.draw.shots, kind.x_position(data, t.draw.rows), t.draw.rows.size) for t in tasks]
    assert levels == [(0, 1, 1.0, 3), (0, 2, 2.0, 6), (0, 4, 4.0, 12), (1, 1, 1.0, 3), (1, 2, 2.0, 6),
                      (1, 4, 4.0, 12), (0, "all", 12.0, 36)]  # fmt: skip  # every slice of each drawn volume
    for seed in (0, 1):
        one, two, four = (set(t.draw.rows) for t in tasks if t.draw.seed == seed and t.draw.shots != "all")
        assert one < two < four  # nested
    again = build_tasks(data, plan)
    assert [t.draw.digest for t in again] == [t.draw.digest for t in tasks]
    assert tasks[0].draw.digest != tasks[3].draw.digest  # another seed, another volume


def test_few_shot_never_reads_validation_labels() -> None:
    data = _data(volumes=False)
    plan = PlanConfig(heads=("seg-linear",), shots=(2, "all"), seeds=2, bootstrap=0)
    rows = run_plan(data, plan)
    assert data.val is not None
    poisoned = dataclasses.replace(data, val=dataclasses.replace(data.val, y=np.zeros_like(data.val.y)))
    again = run_plan(poisoned, plan)
    few = [(r.seed, r.metric, r.value) for r in rows if r.protocol == "shots"]
    assert few == [(r.seed, r.metric, r.value) for r in again if r.protocol == "shots"]
    full = [r for r in rows if r.protocol == "full" and r.metric == "dice"]
    assert full and full[0].params["selection"] == "val" and "val_dice" in full[0].params
