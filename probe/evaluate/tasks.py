"""A plan's training draws: every (seed, shot level), label fraction, full-data run or episode, in order."""

from __future__ import annotations

from probe.errors import ProtocolError
from probe.evaluate.config import PlanConfig, Task
from probe.evaluate.data import EvalData
from probe.evaluate.sampling import ALL, draw_fraction, draw_queries, draw_shot_levels


def build_tasks(data: EvalData, plan: PlanConfig) -> list[Task]:
    """Every training draw of the plan, in a fixed order (seeded; equal for every head and backbone)."""
    from probe.evaluate.kinds import task_kind  # kinds builds on this package's modules

    kind = task_kind(data)
    return kind.tasks(data, plan) if kind.tasks is not None else label_tasks(data, plan)


def label_tasks(data: EvalData, plan: PlanConfig) -> list[Task]:
    """The draws of labelled samples: n per class × seeds, fractions, episodes and the full split."""
    tr = data.train
    tasks: list[Task] = []
    numeric = [s for s in plan.shots if s != ALL]
    if plan.episodes:
        for e in range(plan.episodes):
            seed = plan.seed + e
            queries = draw_queries(
                data.test.ids, data.test.y, per_class=plan.queries, seed=seed, n_classes=data.n_classes
            )
            for d in draw_shot_levels(
                tr.ids, tr.y, tr.groups, shots=numeric, seed=seed, n_classes=data.n_classes, strict=plan.strict
            ):
                tasks.append(Task(draw=d, protocol="episodes", eval_rows=queries))
        return tasks
    for seed in range(plan.seed, plan.seed + plan.seeds):
        for d in draw_shot_levels(
            tr.ids, tr.y, tr.groups, shots=numeric, seed=seed, n_classes=data.n_classes, strict=plan.strict
        ):
            tasks.append(Task(draw=d, protocol="shots"))
        for fraction in plan.fractions:
            d = draw_fraction(tr.ids, tr.y, tr.groups, fraction=fraction, seed=seed, n_classes=data.n_classes)
            tasks.append(Task(draw=d, protocol="fraction"))
    if ALL in plan.shots:  # deterministic given the data: evaluated once, with the first seed
        (d,) = draw_shot_levels(tr.ids, tr.y, tr.groups, shots=[ALL], seed=plan.seed, n_classes=data.n_classes)
        tasks.append(Task(draw=d, protocol="full"))
    return tasks


def plan_tasks(data: EvalData, plan: PlanConfig) -> list[Task]:
    """The plan's draws on ``data``.

    Raises:
        ProtocolError: the plan has no draw (episodes need numeric shots).
    """
    tasks = build_tasks(data, plan)
    if not tasks:
        raise ProtocolError(
            "the plan has no draws: give numeric shots with episodes, e.g. PlanConfig(shots=1,5), or 'all'"
        )
    return tasks
