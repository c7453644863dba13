"""Checks a plan against a source before anything is embedded: splits, labels, heads for the task kind.

``run_curve`` calls :func:`check_source` on the opened source, so a folder without splits, a split
holding one class or a head that cannot serve the data fails in seconds, with the fix named, instead
of after an extraction that leaves an unusable store.
"""

from __future__ import annotations

import numpy as np

from probe.errors import ProtocolError
from probe.evaluate.config import PlanConfig, runner_for
from probe.evaluate.kinds import TASK_KINDS
from probe.sources import SPLITS, Source, split_code


def _split_fix(source: Source) -> str:
    spec = source.spec.split("?")[0]
    return f"give the rows a split (a train/ val/ test/ folder layout, a split column, or {spec}?split=70,10,20)"


def check_source(source: Source, plan: PlanConfig, *, eval_split: str = "test") -> None:
    """Raise before extraction when ``plan`` cannot run on ``source``.

    Args:
        source: the opened source (ids, labels (n,) or (n, C), split codes (n,)).
        plan: the evaluation plan.
        eval_split: ``"test"`` or ``"val"``.

    Raises:
        ProtocolError: no train or evaluation rows (the message names ``?split=``), a split with one
            class (or, multi-label, no label with both states), or a head the task kind has no runner for.
    """
    kind = TASK_KINDS.get(source.task)
    if kind is None:
        raise ProtocolError(f"{source.spec}: task {source.task!r} is not one of {', '.join(TASK_KINDS)}")
    for head in plan.heads:
        runner_for(head, family=kind.family)
    codes = np.asarray(source.splits)
    labels = np.asarray(source.labels)
    for name in ("train", eval_split):
        rows = codes == split_code(name)
        if not rows.any():
            counts = ", ".join(f"{s}: {int((codes == split_code(s)).sum())}" for s in SPLITS)
            raise ProtocolError(f"{source.spec} has no {name} rows ({counts}); {_split_fix(source)}")
        if kind.family == "segmentation":  # label maps are checked by the source itself
            continue
        y = labels[rows]
        if y.ndim == 2:
            if not (((y == 1).any(axis=0)) & ((y == 0).any(axis=0))).any():
                raise ProtocolError(
                    f"{source.spec}: no label has both positive and negative entries in the {name} split; "
                    "check the label columns and the uncertain policy"
                )
        elif np.unique(y).size < 2:
            label = source.classes[int(y[0])] if source.classes else str(y[0])
            raise ProtocolError(
                f"{source.spec}: the {name} split holds a single class ({label!r}); {_split_fix(source)} "
                "so that every split holds several classes"
            )
