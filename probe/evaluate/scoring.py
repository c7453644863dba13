"""Result rows of one evaluation: its metrics on the evaluated rows, a seeded bootstrap CI per row."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from probe.evaluate.config import Evaluation, PlanConfig, head_setup
from probe.evaluate.data import EvalData
from probe.evaluate.kinds import task_kind
from probe.results import ResultRow

VERSIONED = ("numpy", "scipy", "scikit-learn", "faiss-cpu", "faiss-gpu", "torch")  # recorded in every row


def score(
    data: EvalData,
    ev: Evaluation,
    *,
    names: tuple[str, ...],
    plan: PlanConfig,
    run_id: str,
    versions: dict[str, str],
) -> list[ResultRow]:
    """Metric rows of one evaluation (with the bootstrap CI over the evaluated samples).

    Args:
        data: the pools the evaluation was made on.
        ev: the head's probabilities on the whole evaluation split, (n_eval, n_classes).
        names: metric names, resolved for the task kind (:func:`probe.evaluate.kinds.plan_metrics`).
        plan: the plan (bootstrap resamples).
        run_id: the invocation's id.
        versions: library versions recorded in every row.
    """
    task, kind = ev.task, task_kind(data)
    sel = task.eval_rows if task.eval_rows is not None else slice(None)
    y_true, proba = data.test.y[sel], ev.proba[sel]
    n_boot = plan.bootstrap  # episodes: over the episode's query set
    values, cis = kind.score(data, ev, y_true, proba, names, n_boot)
    n_train = int(task.draw.rows.size)
    drawn = task.draw.rows
    # the whole train split is not class-balanced: its mean labels per class hides the smallest class
    spread = {"per_class_range": list(kind.x_range(data, drawn))} if task.protocol == "full" else {}
    common: dict[str, Any] = {
        "dataset": data.dataset,
        "backbone": data.backbone,
        "pooling": data.pooling,
        "head_name": ev.head,
        "protocol": task.protocol,
        "shots": task.draw.shots,
        "fraction": task.draw.fraction,
        "seed": task.draw.seed,
        "ci_method": f"bootstrap-{n_boot}" if n_boot else "none",
        "n_train": n_train,
        "n_test": int(y_true.shape[0]),
        "n_classes": data.n_classes,
        "labels_per_class": kind.x_position(data, drawn),
        "params": {**ev.params, **({"caps": task.draw.caps} if task.draw.caps else {}), **data.notes, **spread},
        "split": data.eval_split,
        "store_fingerprint": data.store_fingerprint,
        **data.identity,  # dataset_fingerprint, dataset_spec: datasets sharing a name stay apart
        "sample_digest": task.draw.digest,
        "setup": {**data.setup, "head": ev.head, **head_setup(ev.head, plan)},
        "flags": data.flags,
        "seconds": round(ev.seconds, 4),
        "versions": versions,
        "run_id": run_id,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return [
        ResultRow(
            metric=m, value=float(v), ci_low=cis.get(m, (None, None))[0], ci_high=cis.get(m, (None, None))[1], **common
        )
        for m, v in values.items()
    ]
