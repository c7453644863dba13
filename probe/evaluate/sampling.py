"""Seeded draws of labelled training samples: n shots per class, label fractions, query sets.

Draws depend only on the sample ids, their labels and groups, the seed and the shot count — never
on a store's row order, the backbone or the head — so every head and every backbone evaluated with
the same seed sees exactly the same training samples (paired curves). For one seed the draws are
nested: the 4-shot sample of a class holds its 2-shot sample, which lowers the variance of a curve.
When groups (patients) are known, a class's samples are taken from as many distinct groups as
possible: one sample from each group in a seeded group order, then a second from each, and so on.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from probe.errors import ProtocolError
from probe.evaluate.defaults import ALL


class CapWarning(UserWarning):
    """A class has fewer training samples than the requested shots; all of them were used."""


@dataclass(frozen=True)
class Draw:
    """One training sample for a head."""

    rows: np.ndarray  # (m,) int64 positions into the pool arrays, sorted
    shots: int | str | None  # requested shots per class ("all" for everything, None for fractions)
    fraction: float | None  # requested label fraction
    seed: int
    caps: dict[int, int] = field(default_factory=dict)  # class → samples available when fewer than asked
    digest: str = ""  # digest of the drawn sample ids (equal digests = identical draws)


def ids_digest(ids: Sequence[str] | np.ndarray) -> str:
    """Short sha256 of a set of sample ids (order-free)."""
    h = hashlib.sha256()
    for s in sorted(str(i) for i in ids):
        h.update(s.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _seed_of(text: str, seed: int) -> np.random.Generator:
    key = int.from_bytes(hashlib.sha256(f"{seed}|{text}".encode()).digest()[:8], "little")
    return np.random.default_rng(key)


def class_order(ids: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, *, cls: int, seed: int) -> np.ndarray:
    """Seeded order of one class's samples (positions into ``ids``), group-interleaved when groups exist.

    Args:
        ids: (n,) sample ids of the pool.
        labels: (n,) class indices.
        groups: (n,) group (patient) ids or None.
        cls: the class.
        seed: the draw seed.

    Returns:
        (n_cls,) int64 positions: the first k are the k-shot sample of this class.
    """
    members = np.flatnonzero(labels == cls)
    members = members[np.argsort(ids[members].astype(str), kind="stable")]  # row order never matters
    rng = _seed_of(f"class:{cls}", seed)
    members = members[rng.permutation(members.size)]
    if groups is None:
        return members
    g = groups[members].astype(str)
    g = np.where(g == "", np.char.add("\0row:", ids[members].astype(str)), g)  # unknown group: its own patient
    uniq = np.unique(g)
    group_rank = {name: r for r, name in enumerate(uniq[_seed_of(f"groups:{cls}", seed).permutation(uniq.size)])}
    seen: dict[str, int] = {}
    round_of = np.empty(members.size, dtype=np.int64)
    for i, name in enumerate(g):  # i-th member of its group (already in seeded order) → round
        round_of[i] = seen.get(name, 0)
        seen[name] = round_of[i] + 1
    rank = np.array([group_rank[name] for name in g], dtype=np.int64)
    return members[np.lexsort((rank, round_of))]


def draw_shots(
    ids: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    shots: int | str,
    seed: int,
    n_classes: int,
    strict: bool = False,
) -> Draw:
    """Draw ``shots`` samples per class without replacement (``"all"``: every sample).

    Args:
        ids: (n,) sample ids of the training pool.
        labels: (n,) class indices in [0, n_classes).
        groups: (n,) group (patient) ids or None.
        shots: samples per class, or ``"all"``.
        seed: draw seed.
        n_classes: number of classes of the dataset.
        strict: raise instead of capping a class that has fewer samples than ``shots``.

    Returns:
        The draw; ``caps`` records every capped class (a :class:`CapWarning` is issued too).

    Raises:
        ProtocolError: invalid shots, or a capped class under ``strict``.
    """
    return draw_shot_levels(ids, labels, groups, shots=[shots], seed=seed, n_classes=n_classes, strict=strict)[0]


def check_shots(shots: int | str) -> int | str:
    """Validate one shot level (a positive int or ``"all"``)."""
    if shots == ALL:
        return ALL
    if not isinstance(shots, (int, np.integer)) or isinstance(shots, bool) or shots < 1:
        raise ProtocolError(f"shots {shots!r} must be a positive integer or 'all', e.g. PlanConfig(shots=1,4,16,all)")
    return int(shots)


def draw_shot_levels(
    ids: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    shots: Sequence[int | str],
    seed: int,
    n_classes: int,
    strict: bool = False,
) -> list[Draw]:
    """:func:`draw_shots` for several shot levels of one seed (nested draws, class orders computed once)."""
    levels = [check_shots(s) for s in shots]
    if np.ndim(labels) == 2:
        return draw_label_levels(ids, labels, groups, shots=levels, seed=seed, strict=strict)
    orders = [class_order(ids, labels, groups, cls=c, seed=seed) for c in range(n_classes)] if levels else []
    draws = []
    for level in levels:
        if level == ALL:
            rows = np.arange(ids.size, dtype=np.int64)
            draws.append(Draw(rows=rows, shots=ALL, fraction=None, seed=seed, digest=ids_digest(ids)))
            continue
        n = int(level)
        caps = {c: int(o.size) for c, o in enumerate(orders) if o.size < n}
        _report_caps(caps, shots=n, strict=strict)
        rows = np.sort(np.concatenate([o[:n] for o in orders])).astype(np.int64)
        draws.append(Draw(rows=rows, shots=n, fraction=None, seed=seed, caps=caps, digest=ids_digest(ids[rows])))
    return draws


def _report_caps(caps: dict[int, int], *, shots: int, strict: bool) -> None:
    if not caps:
        return
    text = ", ".join(f"class {c}: {n}" for c, n in caps.items())
    if strict:
        raise ProtocolError(
            f"{shots} shots asked but some classes have fewer training samples ({text}); lower the shots or "
            "drop PlanConfig(strict=True) to use all samples of those classes (the cap is recorded in each row)"
        )
    warnings.warn(
        f"{shots} shots: classes capped at their size ({text}); recorded in params.caps", CapWarning, stacklevel=3
    )


def draw_fraction(
    ids: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None, *, fraction: float, seed: int, n_classes: int
) -> Draw:
    """Stratified seeded label fraction: ``ceil(fraction × class size)`` samples of each present class.

    Raises:
        ProtocolError: fraction outside (0, 1].
    """
    if not (isinstance(fraction, (int, float)) and 0.0 < float(fraction) <= 1.0):
        raise ProtocolError(f"fraction {fraction!r} must lie in (0, 1], e.g. PlanConfig(fractions=0.01,0.1,1.0)")
    if np.ndim(labels) == 2:
        return _label_fraction(ids, groups, fraction=float(fraction), seed=seed)
    parts = []
    for cls in range(n_classes):
        order = class_order(ids, labels, groups, cls=cls, seed=seed)
        if order.size:
            parts.append(order[: max(1, math.ceil(fraction * order.size - 1e-9))])
    rows = np.sort(np.concatenate(parts)).astype(np.int64)
    return Draw(rows=rows, shots=None, fraction=float(fraction), seed=seed, digest=ids_digest(ids[rows]))


def draw_queries(
    ids: np.ndarray, labels: np.ndarray, *, per_class: int | None, seed: int, n_classes: int
) -> np.ndarray:
    """Seeded query set of an episode: ``per_class`` test samples of each class (None: all of them).

    Returns:
        (q,) sorted int64 positions into the test arrays.
    """
    if per_class is None:
        return np.arange(ids.size, dtype=np.int64)
    if np.ndim(labels) == 2:  # multi-label: per_class positives of every label (see draw_label_levels)
        parts = [label_order(ids, labels, None, label=j, seed=seed + 1_000_003)[:per_class] for j in range(n_classes)]
        return np.unique(np.concatenate(parts)).astype(np.int64)
    parts = [class_order(ids, labels, None, cls=c, seed=seed + 1_000_003)[:per_class] for c in range(n_classes)]
    return np.sort(np.concatenate(parts)).astype(np.int64)


# ---------------------------------------------------------------------------------------------------
# multi-label draws: labels are (n, C) with 1 positive, 0 negative, -1 ignored


def label_order(ids: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, *, label: int, seed: int) -> np.ndarray:
    """Seeded order of the positives of one label (positions into ``ids``), group-interleaved like classes.

    Args:
        ids: (n,) sample ids.
        labels: (n, C) multi-label targets.
        groups: (n,) group ids or None.
        label: the label column.
        seed: the draw seed.
    """
    marked = np.where(labels[:, label] == 1, label, -1)  # the label's positives as one "class"
    return class_order(ids, marked, groups, cls=label, seed=seed)


def draw_label_levels(
    ids: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    shots: Sequence[int | str],
    seed: int,
    strict: bool = False,
) -> list[Draw]:
    """Multi-label n-shot draws: "n per class" means **n positives of every label**.

    Each label's positives are put in a seeded order (:func:`label_order`; ignored entries are not
    positives), and the n-shot draw is the union over labels of the first n of each order. So every
    label has at least ``min(n, its positives)`` positives; a label co-occurring with others
    usually has more (a sample drawn for one label brings all its labels along, and counts as a
    negative for labels it does not have); the draw holds at most ``C * n`` samples and is nested
    across shot levels of a seed (prefixes of fixed orders). Samples with no positive label are drawn
    only as ``"all"``. A label with fewer than n positives is capped (:class:`CapWarning`, recorded
    in ``Draw.caps`` by label index), or an error under ``strict``.

    Args:
        ids: (n,) sample ids.
        labels: (n, C) int targets: 1, 0 or -1 (ignored).
        groups: (n,) group (patient) ids or None.
        shots: levels, each a positive int or ``"all"``.
        seed: draw seed.
        strict: raise instead of capping.
    """
    levels = [check_shots(s) for s in shots]
    orders = [label_order(ids, labels, groups, label=j, seed=seed) for j in range(labels.shape[1])]
    draws = []
    for level in levels:
        if level == ALL:
            draws.append(Draw(np.arange(ids.size, dtype=np.int64), ALL, None, seed, digest=ids_digest(ids)))
            continue
        n = int(level)
        caps = {j: int(o.size) for j, o in enumerate(orders) if o.size < n}
        _report_label_caps(caps, shots=n, strict=strict)
        rows = np.unique(np.concatenate([o[:n] for o in orders])).astype(np.int64)
        draws.append(Draw(rows=rows, shots=n, fraction=None, seed=seed, caps=caps, digest=ids_digest(ids[rows])))
    return draws


def _label_fraction(ids: np.ndarray, groups: np.ndarray | None, *, fraction: float, seed: int) -> Draw:
    """Multi-label fraction: the first ``ceil(fraction × n)`` samples of one seeded order of the pool.

    Not stratified (a sample has several labels); nested across fractions of a seed.
    """
    order = class_order(ids, np.full(ids.size, -1), groups, cls=-1, seed=seed)
    rows = np.sort(order[: max(1, math.ceil(fraction * ids.size - 1e-9))]).astype(np.int64)
    return Draw(rows=rows, shots=None, fraction=fraction, seed=seed, digest=ids_digest(ids[rows]))


def _report_label_caps(caps: dict[int, int], *, shots: int, strict: bool) -> None:
    if not caps:
        return
    text = ", ".join(f"label {j}: {n}" for j, n in caps.items())
    if strict:
        raise ProtocolError(
            f"{shots} shots asked but some labels have fewer positive training samples ({text}); lower the shots "
            "or drop PlanConfig(strict=True) to use every positive of those labels (the cap is recorded in each row)"
        )
    warnings.warn(
        f"{shots} shots: labels capped at their positives ({text}); recorded in params.caps", CapWarning, stacklevel=4
    )
