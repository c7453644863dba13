"""Evaluation plans on stored features: full data, n shots per class × seeds, label fractions, episodes.

A plan turns one :class:`~probe.evaluate.data.EvalData` into result rows: it draws the training
samples (:mod:`probe.evaluate.tasks`, identical for every head and backbone), runs each head on every
draw (the runner of the data's task kind, batched where the head allows), and scores the evaluation
split (:mod:`probe.evaluate.scoring`, a seeded bootstrap CI per row). Multi-view stores with
modality ablation or dropout go through :mod:`probe.evaluate.views`.
"""

from __future__ import annotations

import uuid

from probe.evaluate.config import PlanConfig
from probe.evaluate.data import EvalData
from probe.evaluate.kinds import plan_metrics, task_kind
from probe.evaluate.scoring import VERSIONED, score
from probe.evaluate.tasks import plan_tasks
from probe.evaluate.views import needs_view_plan, run_view_plan
from probe.provenance import library_versions
from probe.results import ResultRow


def run_plan(data: EvalData, plan: PlanConfig, *, run_id: str | None = None) -> list[ResultRow]:
    """Evaluate every head of ``plan`` on ``data``.

    Returns:
        One row per (head, draw, metric), in head → draw → metric order.
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    if needs_view_plan(data, plan):  # modality ablation rows and modality dropout
        return run_view_plan(data, plan, run_id=run_id)
    tasks = plan_tasks(data, plan)
    kind, names = task_kind(data), plan_metrics(data, plan)
    versions = library_versions(*VERSIONED)
    rows: list[ResultRow] = []
    for head in plan.heads:
        for ev in kind.runner(head)(data, tasks, plan):
            rows.extend(score(data, ev, names=names, plan=plan, run_id=run_id, versions=versions))
    return rows
