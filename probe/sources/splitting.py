"""Splits made by probe: seeded, group-aware (no patient in two splits), stratified as far as groups allow.

A source whose rows have no split (a flat ``folder:``, a manifest without a split column, a
``dicom:`` folder) gets one from the ``split`` option of its specification::

    folder:/data/isic?split=70,10,20&split_seed=0

Only rows without a split are assigned. The unit of assignment is the group (patient): all rows of
a group land in one split, and a group that already has rows in a split takes its unassigned rows
there. Rows without a group are units of their own. Groups are placed one by one, largest first
(ties in a seeded order), each into the split where it most reduces the squared distance of the
per-class and total counts from their targets (``ratio × total``, each class weighted by
1/its size), so small classes are stratified as well as the groups permit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.errors import ConfigError
from probe.sources._base import SPLITS, Source
from probe.sources._options import with_options

#: Spec options read here (``?split=TRAIN,VAL,TEST&split_seed=N``), valid for every source.
SPLIT_OPTION_KEYS: tuple[str, ...] = ("split", "split_seed")
_UNSPLIT = SPLITS.index("unsplit")


@dataclass(frozen=True)
class SplitConfig:
    """How probe splits rows that have no split."""

    ratios: tuple[float, float, float]  # train, val, test fractions (normalised to sum 1; val may be 0)
    seed: int = 0  # seeds the order in which equal-sized groups are placed

    @classmethod
    def pop_from(cls, options: dict[str, str]) -> SplitConfig | None:
        """Remove ``split``/``split_seed`` from spec options and parse them (None when absent).

        Raises:
            ConfigError: not three non-negative numbers with positive train and test parts, or a bad seed.
        """
        text, seed_text = options.pop("split", None), options.pop("split_seed", None)
        if text is None:
            if seed_text is not None:
                raise ConfigError("split_seed is given without split; add e.g. ?split=70,10,20&split_seed=0")
            return None
        try:
            parts = [float(p) for p in text.split(",")]
        except ValueError:
            parts = []
        if len(parts) != 3 or not all(math.isfinite(p) and p >= 0 for p in parts) or parts[0] <= 0 or parts[2] <= 0:
            raise ConfigError(
                f"split={text!r} must be three non-negative TRAIN,VAL,TEST parts with TRAIN and TEST > 0, "
                "e.g. split=70,10,20 or split=0.8,0,0.2"
            )
        try:
            seed = int(seed_text) if seed_text is not None else 0
        except ValueError:
            raise ConfigError(f"split_seed={seed_text!r} must be an integer, e.g. split_seed=0") from None
        total = sum(parts)
        return cls(ratios=(parts[0] / total, parts[1] / total, parts[2] / total), seed=seed)

    def to_options(self) -> dict[str, str]:
        """Canonical spec options (ratios as fractions)."""
        return {"split": ",".join(f"{r:.6g}" for r in self.ratios), "split_seed": str(self.seed)}


def _units(groups: list[str] | None, rows: np.ndarray) -> list[str]:
    """Unit name per row: its group, or a unit of its own when the group is unknown or empty."""
    if groups is None:
        return [f"\0row{r}" for r in rows]
    return [groups[r] if groups[r] else f"\0row{r}" for r in rows]


def _class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, C) float counts: one-hot for class indices, the 0/1 matrix itself for multi-label."""
    if labels.ndim == 2:
        return (labels > 0).astype(np.float64)
    return np.eye(n_classes, dtype=np.float64)[labels]


class _Balance:
    """Running per-split class and row counts against their targets."""

    def __init__(self, counts: np.ndarray, ratios: tuple[float, float, float]) -> None:
        self.weights = np.maximum(counts.sum(axis=0), 1.0)  # each class weighted by 1/its size
        self.target = np.outer(ratios, counts.sum(axis=0))  # (3, C)
        self.target_n = np.asarray(ratios) * counts.shape[0]
        self.current = np.zeros_like(self.target)
        self.current_n = np.zeros(3)
        self.allowed = [s for s in range(3) if ratios[s] > 0]

    def add(self, code: int, v: np.ndarray, m: float) -> None:
        self.current[code] += v
        self.current_n[code] += m

    def best(self, v: np.ndarray, m: float) -> int:
        """The split where adding class counts ``v`` (m rows) lowers the squared target distance most."""
        n = float(self.target_n.sum())
        cost = [
            float(np.sum(v * (2 * (self.current[s] - self.target[s]) + v) / self.weights))
            + m * (2 * (self.current_n[s] - self.target_n[s]) + m) / n
            for s in self.allowed
        ]
        return self.allowed[int(np.argmin(cost))]


def assign_splits(
    labels: np.ndarray,
    splits: np.ndarray,
    groups: list[str] | None,
    *,
    config: SplitConfig,
    n_classes: int,
) -> np.ndarray:
    """Split codes for every row: given splits are kept, unsplit rows are assigned group by group.

    Args:
        labels: (n,) class indices, or (n, C) 0/1 multi-label targets.
        splits: (n,) int8 split codes; rows with the ``unsplit`` code are assigned.
        groups: group (patient) id per row, or None.
        config: ratios and seed.
        n_classes: number of classes.

    Returns:
        (n,) int8 codes in {0, 1, 2} for the assigned rows, unchanged elsewhere.
    """
    out = np.asarray(splits, dtype=np.int8).copy()
    counts = _class_counts(np.asarray(labels), n_classes)
    balance = _Balance(counts, config.ratios)
    placed: dict[str, int] = {}
    fixed = np.flatnonzero(out != _UNSPLIT)
    for unit, r in zip(_units(groups, fixed), fixed, strict=True):
        balance.add(int(out[r]), counts[r], 1.0)
        placed.setdefault(unit, int(out[r]))  # a group split before probe saw it keeps its first split
    todo = np.flatnonzero(out == _UNSPLIT)
    members: dict[str, list[int]] = {}
    for unit, r in zip(_units(groups, todo), todo, strict=True):
        members.setdefault(unit, []).append(int(r))
    names = sorted(members)
    seeded = np.random.default_rng(config.seed).permutation(len(names)).tolist()
    for i in sorted(seeded, key=lambda i: -len(members[names[i]])):  # largest first; seeded among equals
        rows = members[names[i]]
        v, m = counts[rows].sum(axis=0), float(len(rows))
        code = placed[names[i]] if names[i] in placed else balance.best(v, m)
        out[rows] = code
        balance.add(code, v, m)
    return out


class ResplitSource(Source):
    """Another source with probe-made splits for its unsplit rows (same rows, same order)."""

    def __init__(self, base: Source, config: SplitConfig) -> None:
        self.base = base
        self.config = config
        self.spec = with_options(base.spec, config.to_options())
        self.name = base.name
        self.classes = base.classes
        self.task = base.task
        self.ids = base.ids
        self.labels = base.labels
        self.groups = base.groups
        self.splits = assign_splits(base.labels, base.splits, base.groups, config=config, n_classes=len(base.classes))

    def load_image(self, index: int) -> np.ndarray:
        return self.base.load_image(index)

    def load_mask(self, index: int) -> np.ndarray:
        return self.base.load_mask(index)

    def location(self, index: int) -> str:
        return self.base.location(index)

    def decode_options(self) -> dict[str, Any]:
        return self.base.decode_options()

    def content_digest(self) -> str:
        return self.base.content_digest()

    def subset_digest(self, indices: np.ndarray) -> str:
        return self.base.subset_digest(indices)


def make_splits(source: Source, config: SplitConfig) -> Source:
    """Give ``source``'s unsplit rows seeded, group-aware, stratified splits.

    Raises:
        ConfigError: the source has no unsplit rows (its own splits are used; drop the split option).
    """
    if not np.any(np.asarray(source.splits) == _UNSPLIT):
        raise ConfigError(
            f"{source.spec} already assigns every row to a split, so split={config.to_options()['split']} "
            "has nothing to do; drop the split option to use the source's own splits"
        )
    return ResplitSource(source, config)
