"""Plans on multi-view stores: modality ablation at test time and modality dropout for the linear head.

Ablation: every head is trained once per draw, then scores the evaluation split several times,
once as stored and once with each modality removed from every test sample (re-fused with the
store's fusion, so "removed" means zeros + indicator 0 for ``concat``, and the mean of the others for
``mean``). The extra test copies are stacked under the real ones, so each runner predicts them in
the same call; their rows carry ``params.ablate = <modality>``.

Modality dropout: the linear head trains on each drawn row plus ``dropout_copies`` copies of it with
modalities dropped at random (:func:`probe.evaluate.fusion.dropout_masks`, seeded by the plan's first seed
and fixed per train row). For few-shot draws C is chosen by CV inside the support on the original
rows only (a row and its masked copy never sit on both sides of a fold), then the support and its
copies are fitted with that C; on the full train split C is chosen on the validation split, which
is never augmented.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from probe.errors import ProtocolError
from probe.evaluate.config import Evaluation, PlanConfig, Task
from probe.evaluate.data import EvalData, Pool
from probe.evaluate.fusion import dropout_masks, fuse_views, without_views
from probe.evaluate.kinds import plan_metrics, task_kind
from probe.evaluate.runners import full_proba, linear_options
from probe.evaluate.sampling import ALL
from probe.evaluate.scoring import VERSIONED, score
from probe.evaluate.tasks import plan_tasks
from probe.provenance import library_versions
from probe.results import ResultRow


def needs_view_plan(data: EvalData, plan: PlanConfig) -> bool:
    """Whether ``plan`` on ``data`` asks for ablation rows or modality dropout.

    Raises:
        ProtocolError: modality dropout on a store without modalities.
    """
    cfg = plan.views
    if cfg.modality_dropout > 0 and data.view_kind != "modalities":
        raise ProtocolError(
            f"ViewConfig(modality_dropout={cfg.modality_dropout}) applies to multi-modal stores; {data.dataset} has "
            f"{data.view_kind or 'one image per sample'}: drop it"
        )
    if task_kind(data).family == "multi-label":
        if cfg.modality_dropout > 0:
            raise ProtocolError(
                f"ViewConfig(modality_dropout={cfg.modality_dropout}) is not supported with multi-label targets; "
                "drop it"
            )
        return False
    return data.view_kind == "modalities" and (cfg.ablate or cfg.modality_dropout > 0)


def ablation_variants(data: EvalData, plan: PlanConfig) -> list[tuple[str | None, np.ndarray]]:
    """(label, fused test features) for the stored test split (label None) and each removed modality."""
    test = data.test
    assert test.views is not None and test.present is not None
    out: list[tuple[str | None, np.ndarray]] = [(None, test.X)]
    if plan.views.ablate:
        for v, name in enumerate(data.views):
            out.append((name, fuse_views(test.views, without_views(test.present, [v]), data.fusion)))
    return out


def run_view_plan(data: EvalData, plan: PlanConfig, *, run_id: str) -> list[ResultRow]:
    """Like :func:`probe.evaluate.plan.run_plan`, plus ablation rows and modality dropout for the linear head."""
    tasks = plan_tasks(data, plan)
    kind, names = task_kind(data), plan_metrics(data, plan)
    versions = library_versions(*VERSIONED)
    variants = ablation_variants(data, plan)
    n = data.test.n
    stacked = replace(
        data,
        test=replace(
            data.test, X=np.concatenate([x for _, x in variants]), y=np.concatenate([data.test.y] * len(variants))
        ),
    )
    rows: list[ResultRow] = []
    for head in plan.heads:
        dropout = head == "linear" and plan.views.modality_dropout > 0
        evaluations = run_linear_dropout(stacked, tasks, plan) if dropout else kind.runner(head)(stacked, tasks, plan)
        for ev in evaluations:
            for k, (label, _) in enumerate(variants):
                params = {**ev.params, **({"ablate": label} if label is not None else {})}
                block = replace(ev, proba=ev.proba[k * n : (k + 1) * n], params=params)
                rows.extend(score(data, block, names=names, plan=plan, run_id=run_id, versions=versions))
    return rows


def _augmented_train(data: EvalData, plan: PlanConfig) -> Pool:
    """The train pool followed by ``dropout_copies`` re-fused copies with random modality masks."""
    tr, cfg = data.train, plan.views
    assert tr.views is not None and tr.present is not None
    masks = dropout_masks(tr.present, p=cfg.modality_dropout, copies=cfg.dropout_copies, seed=plan.seed)
    X = np.concatenate([tr.X, *(fuse_views(tr.views, m, data.fusion) for m in masks)])
    return replace(tr, X=X, y=np.concatenate([tr.y] * (cfg.dropout_copies + 1)), views=None, present=None)


def run_linear_dropout(data: EvalData, tasks: list[Task], plan: PlanConfig) -> list[Evaluation]:
    """The linear head with modality dropout (see the module docstring); rows are named ``linear-mdrop<p>``."""
    from probe.heads.linear import fit_linear_probes

    cfg, vcfg = plan.linear, plan.views
    options = linear_options(plan, preprocessing="support")  # dropout copies are fused from stored views
    aug = _augmented_train(data, plan)
    n, copies = data.train.n, vcfg.dropout_copies

    def augmented(rows: np.ndarray) -> np.ndarray:
        return np.concatenate([rows + c * n for c in range(copies + 1)])

    t0 = time.perf_counter()
    few = [t for t in tasks if t.draw.shots != ALL]
    chosen = fit_linear_probes(data.train.X, data.train.y, [t.draw.rows for t in few], config=options) if few else []
    fitted: dict[int, tuple[Any, str]] = {}
    for C in sorted({float(p.C_) for p in chosen}):  # one batched refit per chosen C
        idx = [i for i, p in enumerate(chosen) if float(p.C_) == C]
        fixed = replace(options, C=C, c_grid=None)
        refits = fit_linear_probes(aug.X, aug.y, [augmented(few[i].draw.rows) for i in idx], config=fixed)
        fitted.update({id(few[i]): (r, str(chosen[i].selection_)) for i, r in zip(idx, refits, strict=True)})
    val = data.val
    for task in (t for t in tasks if t.draw.shots == ALL):
        (probe,) = fit_linear_probes(
            aug.X,
            aug.y,
            [augmented(task.draw.rows)],
            X_val=None if val is None else val.X,
            y_val=None if val is None else val.y,
            config=options,
        )
        fitted[id(task)] = (probe, str(probe.selection_))
    share = (time.perf_counter() - t0) / max(len(tasks), 1)
    out = []
    for task in tasks:
        probe, selection = fitted[id(task)]
        proba = full_proba(probe.predict_proba(data.test.X), probe.classes_, data.n_classes)
        params = {
            "C": float(probe.C_),
            "selection": f"{selection} (without dropout copies)",
            "standardize": cfg.standardize,
            "preprocessing": "support",
            "n_iter": int(np.max(probe.n_iter_)),
            "converged": bool(np.all(probe.converged_)),
            "solver": "probe-lbfgs-batched",
            "precision": str(probe.dtype_),
            "device": str(probe.device_),
            "selection_tol": cfg.selection_tol,
            "modality_dropout": vcfg.modality_dropout,
            "dropout_copies": copies,
            "dropout_seed": plan.seed,
            "n_train_augmented": int(augmented(task.draw.rows).size),
        }
        head = f"linear-mdrop{vcfg.modality_dropout:g}"
        out.append(Evaluation(task=task, head=head, params=params, proba=proba, seconds=share))
    return out
