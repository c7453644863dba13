"""Segmentation as a task kind: stores of patch grids and label maps, draws of labelled images or
volumes, and scoring by Dice / IoU with bootstrap intervals over test images (or volumes).

A segmentation store holds a dense pooling, ``features/<patch...>`` of shape (n, h, w, d), and
``masks`` of shape (n, S, S) at the model input's size (255 = ignore). Rows are 2D images, or the
slices of volumes (ids ``<volume>#<slice>``); the *unit* a shot counts is the image, or the volume,
so "4 shots" of a 3D set are all slices of 4 labelled volumes. Draws use the classification
sampler over units with a single class: seeded, nested across shot levels, patients spread out.
Only the full-data setting reads the validation split (to choose a head's C); few-shot draws never do.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from probe.errors import ProtocolError
from probe.evaluate.config import Evaluation, PlanConfig, Task
from probe.evaluate.data import SPLIT_CODES, EvalData, Pool, check_features, store_setup
from probe.evaluate.defaults import ALL, DEFAULT_METRICS
from probe.evaluate.sampling import draw_fraction, draw_shot_levels
from probe.metrics.segmentation import bootstrap_seg_ci, compute_seg_metrics, resolve_seg_metrics
from probe.store import EmbeddingStore

Scores = tuple[dict[str, float], dict[str, tuple[float, float]]]


def is_segmentation_store(store: EmbeddingStore) -> bool:
    """Whether a store holds label maps (made from a ``seg:`` source)."""
    return store.attrs.get("mask_size") is not None


def load_seg_data(store: EmbeddingStore, *, pooling: str | None = None, eval_split: str = "test") -> EvalData:
    """Split a segmentation store into train / val / evaluation pools of patch grids and label maps.

    Pools hold ``X`` (n, h, w, d) float16/float32 patch features, ``y`` (n, S, S) uint8 label maps and
    ``units`` (n,) the image or volume id of each row.

    Raises:
        ProtocolError: the pooling is not a patch grid, or a split the plan needs has no rows.
    """
    grids = store.grids
    pooling = pooling or next(iter(grids), None) or next(iter(store.poolings))
    if pooling not in grids:
        raise ProtocolError(
            f"{store.path}: pooling {pooling!r} is not a patch grid; segmentation heads need one of "
            f"{', '.join(grids) or 'none (extract with ExtractConfig(poolings=patch))'}"
        )
    if eval_split not in ("test", "val"):
        raise ProtocolError(f"evaluation split {eval_split!r}: use 'test' or 'val'")
    source = store.attrs.get("source", {})
    name = str(source.get("name", "?"))
    X, masks = store.features(pooling), np.asarray(store.masks)
    valid, split = np.asarray(store.valid).astype(bool), np.asarray(store.split)
    ids = np.array([str(v) for v in store.ids.tolist()])
    volumetric = "slice_axis" in store.attrs.get("fingerprint_inputs", {}).get("source", {}).get("decode", {})
    units = np.array([i.rpartition("#")[0] for i in ids]) if volumetric else ids
    groups = None if store.groups is None else np.array([str(v) for v in store.groups.tolist()])
    pools: dict[str, Pool | None] = {}
    for s in ("train", "val", "test"):
        keep = valid & (split == SPLIT_CODES[s])
        g = None if groups is None else groups[keep]
        pools[s] = Pool(X=X[keep], y=masks[keep], ids=ids[keep], groups=g, units=units[keep]) if keep.any() else None
    train, test = pools["train"], pools[eval_split]
    if train is None or test is None:
        missing = "train" if train is None else eval_split
        raise ProtocolError(f"{name}: the store has no valid {missing} rows; give the manifest a split column")
    sample = train.X[:: max(1, train.n // 64)]
    flat = sample.reshape(-1, sample.shape[-1]).astype(np.float32)
    return EvalData(
        dataset=name,
        backbone=str(store.attrs.get("backbone", {}).get("name", "?")),
        pooling=pooling,
        store_path=store.path,
        store_fingerprint=store.fingerprint,
        classes=tuple(str(c) for c in source.get("classes", [])),
        task="segmentation",
        train=train,
        val=pools["val"] if eval_split == "test" else None,
        test=test,
        eval_split=eval_split,
        notes={"invalid_rows": int((~valid).sum()), "unit": "volume" if volumetric else "image"},
        dataset_fingerprint=str(store.attrs.get("fingerprint_inputs", {}).get("source", {}).get("content", "")),
        dataset_spec=str(source.get("spec", "")),
        setup=store_setup(store, pooling),
        flags=(
            *check_features(flat, what=f"{name} ({store.path}, {pooling})", store=store),
            *(str(f) for f in source.get("mask_flags", [])),  # empty masks, classes only in test
        ),
    )


def _unit_pool(pool: Pool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(unit ids (u,), unit index of each row (n,), group of each unit (u,) or None)."""
    units = pool.units if pool.units is not None else pool.ids
    uniq, first, inverse = np.unique(units, return_index=True, return_inverse=True)
    groups = None if pool.groups is None else pool.groups[first]
    return uniq, inverse, groups


def seg_tasks(data: EvalData, plan: PlanConfig) -> list[Task]:
    """The plan's draws of labelled units (images or volumes): shot levels × seeds, fractions, and "all".

    Raises:
        ProtocolError: episodes were asked for (they are a classification protocol).
    """
    if plan.episodes:
        raise ProtocolError("PlanConfig(episodes) applies to classification; segmentation uses shots × seeds")
    uniq, inverse, groups = _unit_pool(data.train)
    one_class = np.zeros(uniq.size, dtype=np.int64)

    def rows_of(draw_units: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(inverse, draw_units)).astype(np.int64)

    numeric = [s for s in plan.shots if s != ALL]
    tasks: list[Task] = []
    for seed in range(plan.seed, plan.seed + plan.seeds):
        for d in draw_shot_levels(uniq, one_class, groups, shots=numeric, seed=seed, n_classes=1, strict=plan.strict):
            tasks.append(Task(draw=dataclasses.replace(d, rows=rows_of(d.rows)), protocol="shots"))
        for fraction in plan.fractions:
            d = draw_fraction(uniq, one_class, groups, fraction=fraction, seed=seed, n_classes=1)
            tasks.append(Task(draw=dataclasses.replace(d, rows=rows_of(d.rows)), protocol="fraction"))
    if ALL in plan.shots:
        (d,) = draw_shot_levels(uniq, one_class, groups, shots=[ALL], seed=plan.seed, n_classes=1)
        tasks.append(Task(draw=dataclasses.replace(d, rows=np.arange(data.train.n, dtype=np.int64)), protocol="full"))
    return tasks


def seg_metrics(data: EvalData, names: tuple[str, ...]) -> tuple[str, ...]:
    """The plan's metric names for segmentation (the classification defaults mean "the Dice defaults")."""
    chosen = () if names == DEFAULT_METRICS else names
    return resolve_seg_metrics(chosen, classes=data.classes, volumes=data.notes.get("unit") == "volume")


def _eval_units(data: EvalData, ev: Evaluation) -> np.ndarray | None:
    if data.notes.get("unit") != "volume":
        return None
    _, inverse, _ = _unit_pool(data.test)
    return inverse if ev.task.eval_rows is None else inverse[ev.task.eval_rows]


def seg_score(
    data: EvalData, ev: Evaluation, y_true: np.ndarray, pred: np.ndarray, names: tuple[str, ...], n_boot: int
) -> Scores:
    """Dice / IoU (/ volume Dice, HD95) of predicted label maps, CIs resampling test images or volumes."""
    kwargs = {"n_classes": data.n_classes, "classes": data.classes, "metrics": names, "units": _eval_units(data, ev)}
    values = compute_seg_metrics(y_true, pred, **kwargs)  # type: ignore[arg-type]
    cis = bootstrap_seg_ci(y_true, pred, n_resamples=n_boot, seed=ev.task.draw.seed, **kwargs) if n_boot else {}  # type: ignore[arg-type]
    return values, cis


def labelled_units(data: EvalData, rows: np.ndarray) -> float:
    """The x of a draw: labelled images (2D) or labelled volumes (3D)."""
    units = data.train.units if data.train.units is not None else data.train.ids
    return float(np.unique(units[rows]).size)


def unit_range(data: EvalData, rows: np.ndarray) -> tuple[int, int]:
    n = int(labelled_units(data, rows))
    return n, n
