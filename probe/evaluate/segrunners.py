"""Runners of the segmentation heads over a plan's draws of labelled images (or volumes).

Every head predicts label maps of the evaluation split at the stored mask size; the scorer of the
``segmentation`` task kind turns them into Dice / IoU rows. Feature statistics come from the whole
train pool's patches (no labels, never val/test): ``seg-linear`` and ``seg-conv`` see standardised
features, ``seg-knn`` centred ones (cosine after centring, as SimpleShot's CL2N).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from probe.evaluate.config import Evaluation, PlanConfig, Task, register_runner
from probe.evaluate.data import EvalData
from probe.heads import SegConvProbe, SegKNNProbe, fit_seg_linear_batch, pool_statistics
from probe.metrics.segmentation import compute_seg_metrics


def _standardised(data: EvalData, *, scale: bool, val: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Train, evaluation and (with ``val``) validation patch grids, (n, h, w, d) float32, centred (and
    scaled) by the train pool's patch statistics."""
    mean, std = pool_statistics(data.train.X)
    div = std if scale else np.ones_like(std)

    def prep(X: np.ndarray) -> np.ndarray:
        return ((X.astype(np.float32) - mean) / div).astype(np.float32)

    Xval = prep(data.val.X) if val and data.val is not None else None
    return prep(data.train.X), prep(data.test.X), Xval


def _evaluations(
    head: str, tasks: Sequence[Task], maps: Sequence[np.ndarray], params: Sequence[dict[str, object]], seconds: float
) -> list[Evaluation]:
    share = seconds / max(1, len(tasks))
    return [
        Evaluation(task=t, head=head, params=p, proba=m, seconds=share)
        for t, m, p in zip(tasks, maps, params, strict=True)
    ]


@register_runner("seg-linear", family="segmentation")
def run_seg_linear(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """Soft-label patch logistic regression: every draw (and every C of the full-data grid) in one batched solve."""
    cfg, K = plan.seg, data.n_classes
    t0 = time.perf_counter()
    Xtr, Xte, Xval = _standardised(data, scale=True)
    ytr = data.train.y
    full = [i for i, t in enumerate(tasks) if t.protocol == "full"]
    grid = list(cfg.c_grid) if full and Xval is not None and data.val is not None else []
    draws = [t.draw.rows for t in tasks] + [tasks[full[0]].draw.rows for _ in grid]  # grid: C candidates on val
    Cs = [cfg.C] * len(tasks) + grid
    probes = fit_seg_linear_batch(
        Xtr,
        ytr,
        draws,
        Cs,
        n_classes=K,
        max_iter=cfg.max_iter,
        tol=cfg.tol,
        device=plan.device,
        precision=cfg.precision,
    )
    params: list[dict[str, object]] = [
        {"C": cfg.C, "selection": "fixed", "preprocessing": "pool-standardise", "n_iter": int(p.n_iter_)}
        for p in probes[: len(tasks)]
    ]
    chosen = list(probes[: len(tasks)])
    if grid:
        assert Xval is not None and data.val is not None
        scores = [
            compute_seg_metrics(data.val.y, p.predict(Xval), n_classes=K, classes=data.classes, metrics="dice")["dice"]
            for p in probes[len(tasks) :]
        ]
        best = int(np.nanargmax(np.nan_to_num(np.asarray(scores, dtype=float), nan=-1.0)))
        for i in full:
            chosen[i] = probes[len(tasks) + best]
            params[i] = {**params[i], "C": grid[best], "selection": "val", "n_iter": int(chosen[i].n_iter_),
                         "val_dice": [round(float(s), 4) for s in scores]}  # fmt: skip
    maps = [p.predict(Xte) for p in chosen]
    return _evaluations("seg-linear", tasks, maps, params, time.perf_counter() - t0)


def _per_draw(head: str, tasks: list[Task], t0: float, fit_predict: Callable[[Task], np.ndarray],
              params: dict[str, object]) -> list[Evaluation]:  # fmt: skip
    """One fit per draw (heads that do not batch across draws), each predicting the evaluation split."""
    maps = [fit_predict(t) for t in tasks]
    return _evaluations(head, tasks, maps, [dict(params) for _ in tasks], time.perf_counter() - t0)


@register_runner("seg-knn", family="segmentation")
def run_seg_knn(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """Label transfer from the k most similar labelled patches (cosine of train-pool-centred features)."""
    cfg, t0 = plan.seg, time.perf_counter()
    Xtr, Xte, _ = _standardised(data, scale=False, val=False)

    def fit_predict(t: Task) -> np.ndarray:
        probe = SegKNNProbe(k=cfg.k, temperature=cfg.temperature, device=plan.device)
        return probe.fit(Xtr[t.draw.rows], data.train.y[t.draw.rows], n_classes=data.n_classes).predict(Xte)

    params = {"k": cfg.k, "temperature": cfg.temperature, "preprocessing": "pool-centre-l2"}
    return _per_draw("seg-knn", tasks, t0, fit_predict, params)


@register_runner("seg-conv", family="segmentation")
def run_seg_conv(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """The light decoder (3x3 conv, BN, ReLU, 1x1 conv, bilinear upsampling) trained for fixed epochs per draw."""
    cfg, t0 = plan.seg, time.perf_counter()
    Xtr, Xte, _ = _standardised(data, scale=True, val=False)

    def fit_predict(t: Task) -> np.ndarray:
        probe = SegConvProbe(hidden=cfg.hidden, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                             seed=t.draw.seed, device=plan.device)  # fmt: skip
        return probe.fit(Xtr[t.draw.rows], data.train.y[t.draw.rows], n_classes=data.n_classes).predict(Xte)

    params = {"epochs": cfg.epochs, "hidden": cfg.hidden, "preprocessing": "pool-standardise"}
    return _per_draw("seg-conv", tasks, t0, fit_predict, params)
