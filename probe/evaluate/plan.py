"""Evaluation plans on stored features: full data, n shots per class × seeds, label fractions, episodes.

A plan turns one :class:`~probe.evaluate.data.EvalData` into result rows: it draws the training
samples (:mod:`probe.evaluate.tasks`, identical for every head and backbone), runs each head on every
draw (the runner of the data's task kind, batched where the head allows), and scores the evaluation
split (:mod:`probe.evaluate.scoring`, a seeded bootstrap CI per row). Multi-view stores with
modality ablation or dropout go through :mod:`probe.evaluate.views`.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable

from tqdm import tqdm

from probe.evaluate.config import Evaluation, PlanConfig
from probe.evaluate.data import EvalData
from probe.evaluate.kinds import plan_metrics, task_kind
from probe.evaluate.scoring import VERSIONED, score
from probe.evaluate.tasks import plan_tasks
from probe.evaluate.views import needs_view_plan, run_view_plan
from probe.provenance import library_versions
from probe.results import ResultRow


def run_plan(
    data: EvalData,
    plan: PlanConfig,
    *,
    run_id: str | None = None,
    progress: bool = False,
    keep: Callable[[Evaluation], None] | None = None,
) -> list[ResultRow]:
    """Evaluate every head of ``plan`` on ``data``.

    Args:
        data: the pools of one store.
        plan: heads, draws, metrics.
        run_id: the invocation's id (default: a new one).
        progress: a bar over (head, draw) evaluations with an ETA on stderr (batched heads advance it
            by a whole head at a time).
        keep: called with every evaluation before it is scored (e.g. to keep example predictions).

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
    desc = f"probing {data.dataset} · {data.backbone}"
    with tqdm(total=len(plan.heads) * len(tasks), desc=desc, unit="draw", disable=not progress, file=sys.stderr) as bar:
        for head in plan.heads:
            bar.set_postfix_str(head)
            for ev in kind.runner(head)(data, tasks, plan):
                if keep is not None:
                    keep(ev)
                rows.extend(score(data, ev, names=names, plan=plan, run_id=run_id, versions=versions))
                bar.update(1)
    return rows
