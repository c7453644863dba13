"""Evaluation on stored features: plans, draws, head runners, scoring and the library calls behind the CLI.

Modules, in the order data flows through them: :mod:`~probe.evaluate.data` (a store → train / val /
test pools), :mod:`~probe.evaluate.fusion` (views → one vector), :mod:`~probe.evaluate.sampling`
(seeded draws), :mod:`~probe.evaluate.config` (plans, tasks, the runner registry),
:mod:`~probe.evaluate.kinds` (single- vs multi-label behaviour), :mod:`~probe.evaluate.tasks`,
:mod:`~probe.evaluate.runners` and :mod:`~probe.evaluate.multilabel` (heads over draws),
:mod:`~probe.evaluate.views` (modality ablation and dropout), :mod:`~probe.evaluate.scoring`
(result rows), :mod:`~probe.evaluate.plan` (``run_plan``) and :mod:`~probe.evaluate.api`
(``run_curve``, ``run_probes``). Public names load lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as mypy and IDEs see them; at run time they load on first use
    from probe.evaluate.api import ProbeRun, StoreChoice, run_curve, run_curves, run_probes
    from probe.evaluate.config import (
        DEFAULT_METRICS,
        DEFAULT_SHOTS,
        Evaluation,
        KNNConfig,
        LabelSpreadConfig,
        LinearConfig,
        PlanConfig,
        PrototypeConfig,
        Task,
        head_names,
        register_runner,
    )
    from probe.evaluate.data import EvalData, Pool, find_store, load_eval_data
    from probe.evaluate.fusion import ViewConfig
    from probe.evaluate.kinds import TASK_KINDS, TaskKind, plan_metrics, task_kind
    from probe.evaluate.plan import run_plan
    from probe.evaluate.sampling import ALL
    from probe.evaluate.scoring import score
    from probe.evaluate.tasks import build_tasks

_HOME = {
    "ALL": "probe.evaluate.sampling",
    "DEFAULT_METRICS": "probe.evaluate.config",
    "DEFAULT_SHOTS": "probe.evaluate.config",
    "EvalData": "probe.evaluate.data",
    "Evaluation": "probe.evaluate.config",
    "KNNConfig": "probe.evaluate.config",
    "LabelSpreadConfig": "probe.evaluate.config",
    "LinearConfig": "probe.evaluate.config",
    "PlanConfig": "probe.evaluate.config",
    "Pool": "probe.evaluate.data",
    "ProbeRun": "probe.evaluate.api",
    "PrototypeConfig": "probe.evaluate.config",
    "StoreChoice": "probe.evaluate.api",
    "TASK_KINDS": "probe.evaluate.kinds",
    "Task": "probe.evaluate.config",
    "TaskKind": "probe.evaluate.kinds",
    "ViewConfig": "probe.evaluate.fusion",
    "build_tasks": "probe.evaluate.tasks",
    "find_store": "probe.evaluate.data",
    "head_names": "probe.evaluate.config",
    "load_eval_data": "probe.evaluate.data",
    "register_runner": "probe.evaluate.config",
    "run_curve": "probe.evaluate.api",
    "run_curves": "probe.evaluate.api",
    "plan_metrics": "probe.evaluate.kinds",
    "run_plan": "probe.evaluate.plan",
    "score": "probe.evaluate.scoring",
    "task_kind": "probe.evaluate.kinds",
    "run_probes": "probe.evaluate.api",
}
__all__ = [
    "ALL",
    "DEFAULT_METRICS",
    "DEFAULT_SHOTS",
    "TASK_KINDS",
    "EvalData",
    "Evaluation",
    "KNNConfig",
    "LabelSpreadConfig",
    "LinearConfig",
    "PlanConfig",
    "Pool",
    "ProbeRun",
    "PrototypeConfig",
    "StoreChoice",
    "Task",
    "TaskKind",
    "ViewConfig",
    "build_tasks",
    "find_store",
    "head_names",
    "load_eval_data",
    "plan_metrics",
    "register_runner",
    "run_curve",
    "run_curves",
    "run_plan",
    "run_probes",
    "score",
    "task_kind",
]


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'probe.evaluate' has no attribute {name!r}")
