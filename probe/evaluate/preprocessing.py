"""Feature preprocessing policies shared by the linear and label-spreading heads.

``support`` is the per-support rule (the linear head z-scores with the drawn rows' own statistics;
label spreading takes raw features); the ``pool-*`` policies transform every split with statistics
of the whole train split's *features*: the unlabelled images of a limited-label study are there, only
their labels are scarce. No statistic ever reads validation or test features, or any label.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from probe.evaluate.defaults import DEFAULT_PREPROCESSING, POLICIES

if TYPE_CHECKING:
    from probe.evaluate.data import EvalData, Pool

__all__ = ["DEFAULT_PREPROCESSING", "POLICIES"]  # re-exported: stated once in probe.evaluate.defaults


#: ``auto`` centres and L2-normalises draws of at most this many labels per class (see resolve_policy).
AUTO_L2_MAX_SHOTS = 32


def resolve_policy(policy: str, *, shots: int | str | None, head: str = "linear") -> str:
    """The policy a head applies to one draw; ``auto`` resolves by the evidence in docs/benchmarks.md.

    ``auto``: ``pool-centre-l2`` up to :data:`AUTO_L2_MAX_SHOTS` labels per class (up to 8 pp above
    ``support`` at 1-4 shots, never 1 pp below it on the four shared MedMNIST sets), ``pool-standardise``
    for larger few-shot draws (at 64 shots centre-l2 fell 1.3 pp below ``support`` on RetinaMNIST),
    ``support`` for the whole train split (there the support's statistics are the pool's), for label
    fractions (not measured) and for label spreading (its graph reads raw cosine similarities).

    Args:
        policy: the plan's policy (:data:`POLICIES`).
        shots: the draw's labels per class, ``"all"``, or None for a label-fraction draw.
        head: ``"linear"`` or ``"labelspread"``.
    """
    if policy != "auto":
        return policy
    if head == "labelspread" or shots is None or shots == "all":
        return "support"
    return "pool-centre-l2" if int(shots) <= AUTO_L2_MAX_SHOTS else "pool-standardise"


def transform_pools(data: EvalData, policy: str) -> EvalData:
    """``data`` with every split's X transformed by ``policy`` (statistics from ``data.train.X`` only).

    - ``pool-standardise``: ``(x - mean) / std`` (zero-spread columns keep scale 1);
    - ``pool-centre-l2``: ``(x - mean) / ||x - mean||`` (rows that are zero after centring stay zero).

    Args:
        data: the pools; per-view features (multi-view stores) are left as stored.
        policy: one of :data:`POLICIES` other than ``auto`` (see :func:`resolve_policy`).

    Returns:
        The same data for ``support``; else a copy with float32 transformed features.
    """
    if policy == "support":
        return data
    train = data.train.X
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0

    def apply(pool: Pool | None) -> Pool | None:
        if pool is None:
            return None
        z = pool.X.astype(np.float64) - mean
        if policy == "pool-standardise":
            z /= std
        else:
            norm = np.linalg.norm(z, axis=1, keepdims=True)
            z = np.divide(z, norm, out=np.zeros_like(z), where=norm > 0)
        return replace(pool, X=z.astype(np.float32))

    out_train, out_test = apply(data.train), apply(data.test)
    assert out_train is not None and out_test is not None
    return replace(data, train=out_train, val=apply(data.val), test=out_test)
