"""``probe data check``: class counts per split, duplicate images and patients shared across splits.

Leakage is what makes a test score optimistic: the same patient (group) in two splits, or the same
image in two splits. Duplicates are found two ways: identical decoded pixels (sha256 of the decoded
array's dtype, shape and bytes, so a re-encoded or renamed copy is caught) and, for file sources,
identical file bytes. Duplicates inside one split are reported as notes, not leaks. Near-duplicates
(resized, re-windowed or slightly edited copies) are not detected.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from probe.errors import ImageDecodeError
from probe.sources import SPLITS, Source, open_source

#: ``probe data check`` exit code when a leak is found (1 stays the code of user errors).
LEAK_EXIT_CODE = 2
_EVAL_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DuplicateSet:
    """Samples whose content is identical."""

    kind: str  # "pixels" (same decoded image) or "bytes" (same file)
    digest: str  # sha256 (pixels) or blake2b (bytes) hex prefix
    ids: list[str]  # sample ids, in source order
    splits: list[str]  # split of each id

    @property
    def cross_split(self) -> bool:
        """Whether the copies sit in two or more of train/val/test (a leak)."""
        return len({s for s in self.splits if s in _EVAL_SPLITS}) > 1

    def line(self) -> str:
        what = "identical decoded pixels" if self.kind == "pixels" else "identical file bytes"
        members = ", ".join(f"{i!r} ({s})" for i, s in zip(self.ids, self.splits, strict=True))
        scope = "across splits" if self.cross_split else "within one split"
        return f"{what} {scope}: {members} [{self.kind} {self.digest}]"


@dataclass(frozen=True)
class SharedGroup:
    """A group (patient) with samples in more than one of train/val/test."""

    group: str
    counts: dict[str, int]  # split → samples of this group

    def line(self) -> str:
        where = ", ".join(f"{s} ({n} sample{'s' if n != 1 else ''})" for s, n in self.counts.items())
        return f"patient {self.group!r} is in {where}"


@dataclass(frozen=True)
class DataCheck:
    """What ``probe data check`` found."""

    spec: str
    n_samples: int
    classes: list[str]
    class_counts: dict[str, dict[str, int]]  # split → class → samples (multi-label: positives)
    has_groups: bool
    n_groups: int
    shared_groups: list[SharedGroup]
    duplicates: list[DuplicateSet]
    undecodable: list[str] = field(default_factory=list)  # one line per sample that could not be decoded
    checked: list[str] = field(default_factory=list)  # "groups", "pixels", "bytes": what was examined

    @property
    def leaks(self) -> list[str]:
        """One line per leak (patients shared across splits, duplicates across splits)."""
        return [g.line() for g in self.shared_groups] + [d.line() for d in self.duplicates if d.cross_split]

    @property
    def notes(self) -> list[str]:
        """Findings that are not leaks: duplicates within a split, undecodable samples, missing groups."""
        out = [d.line() for d in self.duplicates if not d.cross_split] + self.undecodable
        if not self.has_groups:
            out.append("no group (patient) ids: patient leakage cannot be checked; add a group column")
        return out

    @property
    def ok(self) -> bool:
        return not self.leaks

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["duplicates"] = [{**asdict(x), "cross_split": x.cross_split} for x in self.duplicates]
        d.update(ok=self.ok, leaks=self.leaks, notes=self.notes)
        return d


def class_counts(source: Source) -> dict[str, dict[str, int]]:
    """Samples per class in every split present (multi-label: positive samples per label)."""
    out: dict[str, dict[str, int]] = {}
    labels = np.asarray(source.labels)
    for code in np.unique(source.splits):
        rows = np.asarray(source.splits) == code
        if labels.ndim == 2:
            per = (labels[rows] == 1).sum(axis=0)
        else:
            per = np.bincount(labels[rows], minlength=len(source.classes))
        out[SPLITS[int(code)]] = {c: int(n) for c, n in zip(source.classes, per, strict=True)}
    return out


def shared_groups(source: Source) -> list[SharedGroup]:
    """Groups present in two or more of train/val/test (empty group ids are ignored)."""
    if source.groups is None:
        return []
    seen: dict[str, dict[str, int]] = {}
    for g, code in zip(source.groups, np.asarray(source.splits).tolist(), strict=True):
        split = SPLITS[int(code)]
        if g and split in _EVAL_SPLITS:
            seen.setdefault(g, {}).setdefault(split, 0)
            seen[g][split] += 1
    ordered = {g: {s: c[s] for s in _EVAL_SPLITS if s in c} for g, c in seen.items()}
    return [SharedGroup(group=g, counts=c) for g, c in sorted(ordered.items()) if len(c) > 1]


def pixel_digest(image: np.ndarray) -> str:
    """sha256 of a decoded image's dtype, shape and bytes."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def sample_digest(source: Source, index: int) -> str:
    """Pixel digest of one sample: its image, or every present view (slices, modalities) in order."""
    if source.views is None:
        return pixel_digest(source.load_image(index))
    present = source.view_mask()[index]
    h = hashlib.sha256()
    for v in np.flatnonzero(present):
        h.update(f"{v}:{pixel_digest(source.load_view(index, int(v)))}".encode())
    return h.hexdigest()


def _groups_of(keys: list[str | None], source: Source, kind: str) -> list[DuplicateSet]:
    """Duplicate sets from one key per row (None: not compared)."""
    rows: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if k is not None:
            rows.setdefault(k, []).append(i)
    return [
        DuplicateSet(
            kind=kind,
            digest=k[:16],
            ids=[source.ids[i] for i in r],
            splits=[SPLITS[int(source.splits[i])] for i in r],
        )
        for k, r in rows.items()
        if len(r) > 1
    ]


def _file_keys(source: Source) -> list[str | None] | None:
    """blake2b of each row's file, for sources with one file per row (None otherwise)."""
    from probe.sources._base import cache_root
    from probe.sources.files import content_digests

    base = getattr(source, "base", source)
    paths = getattr(base, "paths", None)
    if paths is None or len(paths) != len(source):
        return None  # not a one-file-per-row source (MedMNIST arrays, per-frame rows)
    digests = content_digests(list(paths), cache_file=cache_root() / "digests" / "datacheck.json")
    return [None if d in ("missing", "unreadable") else d for d in digests]


def check_source(source: Source, *, pixels: bool = True, progress: bool = False) -> DataCheck:
    """Check a source for leakage (see the module docstring).

    Args:
        source: the data, with its splits and groups.
        pixels: decode every image and compare pixel digests (the slow part).
        progress: show a progress bar on stderr while decoding.
    """
    checked = ["groups"] if source.groups is not None else []
    duplicates: list[DuplicateSet] = []
    file_keys = _file_keys(source)
    if file_keys is not None:
        duplicates += _groups_of(file_keys, source, "bytes")
        checked.append("bytes")
    undecodable: list[str] = []
    if pixels:
        from tqdm.auto import tqdm

        keys: list[str | None] = []
        for i in tqdm(range(len(source)), unit="img", desc="data check", disable=not progress, dynamic_ncols=True):
            try:
                keys.append(sample_digest(source, i))
            except ImageDecodeError as exc:
                keys.append(None)
                undecodable.append(f"undecodable: {exc}")
        duplicates += _groups_of(keys, source, "pixels")
        checked.append("pixels")
    return DataCheck(
        spec=source.spec,
        n_samples=len(source),
        classes=list(source.classes),
        class_counts=class_counts(source),
        has_groups=source.groups is not None,
        n_groups=len({g for g in source.groups or [] if g}),
        shared_groups=shared_groups(source),
        duplicates=sorted(duplicates, key=lambda d: (not d.cross_split, d.kind, d.ids)),
        undecodable=undecodable,
        checked=checked,
    )


def check_data(
    data: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    pixels: bool = True,
    progress: bool = False,
) -> DataCheck:
    """Open ``data`` (any source specification, split options included) and check it.

    Raises:
        SourceError: the source cannot be opened.
    """
    return check_source(open_source(data, data_root=data_root), pixels=pixels, progress=progress)
