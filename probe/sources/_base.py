"""The source contract: ordered records (id, image, label, split, group) and a content fingerprint."""

from __future__ import annotations

import abc
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ConfigError, SourceError

#: Split names in the order their integer codes are stored (code = index).
SPLITS: tuple[str, ...] = ("train", "val", "test", "unsplit")


def cache_root() -> Path:
    """probe's cache folder: ``PROBE_CACHE_DIR``, else ``~/.cache/probe``."""
    return Path(os.environ.get("PROBE_CACHE_DIR") or Path.home() / ".cache" / "probe")


def split_code(name: str) -> int:
    """Return the stored code of a split name, raising a clear error for unknown names."""
    key = name.strip().lower()
    aliases = {"valid": "val", "validation": "val", "dev": "val", "training": "train", "": "unsplit"}
    key = aliases.get(key, key)
    if key not in SPLITS:
        raise ConfigError(f"unknown split {name!r}; use one of {', '.join(SPLITS[:3])} (or leave it empty)")
    return SPLITS.index(key)


class Source(abc.ABC):
    """An ordered, indexable dataset of images with labels, splits and optional groups.

    Subclasses fill the attributes in ``__init__`` and implement :meth:`load_image`.

    Attributes:
        spec: canonical specification string, e.g. ``"medmnist:bloodmnist@28"``.
        name: short dataset name used in store keys, e.g. ``"bloodmnist_28"``.
        classes: class names; label ``i`` means ``classes[i]``.
        task: ``"multiclass"``, ``"binary"``, ``"ordinal"`` (ordered classes) or ``"multilabel"``.
        ids: sample ids, length n, unique.
        labels: (n,) int64 class indices, or (n, n_classes) int64 0/1 for multi-label.
        splits: (n,) int8 split codes (see :data:`SPLITS`).
        groups: group (patient) id per sample, or ``None`` when unknown.
        views: names of the views of every sample (slices of a volume, modalities of a study), or
            ``None`` for one image per sample; multi-view sources implement :meth:`load_view`.
        view_kind: ``"slices"`` or ``"modalities"`` for multi-view sources, else ``""``.
    """

    spec: str
    name: str
    classes: tuple[str, ...]
    task: str
    ids: list[str]
    labels: np.ndarray
    splits: np.ndarray
    groups: list[str] | None
    views: tuple[str, ...] | None = None
    view_kind: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def view_mask(self) -> np.ndarray:
        """(n, n_views) bool: which views each sample has (known before decoding; all True by default)."""
        return np.ones((len(self), len(self.views or ("image",))), dtype=bool)

    def load_view(self, index: int, view: int) -> np.ndarray:
        """Decode view ``view`` of sample ``index`` (single-image sources: view 0 is the image).

        Returns:
            (H, W, 3) uint8, or (H, W, 3) float32 in [0, 1].
        """
        if self.views is not None:
            raise NotImplementedError(f"{type(self).__name__} has views but does not implement load_view")
        return self.load_image(index)

    @abc.abstractmethod
    def load_image(self, index: int) -> np.ndarray:
        """Decode one sample.

        Returns:
            (H, W, 3) uint8, or (H, W, 3) float32 in [0, 1] for high-bit-depth images.

        Raises:
            ImageDecodeError: the sample's file is missing or corrupt (message names id and path).
        """

    def load_mask(self, index: int) -> np.ndarray:
        """The per-pixel class map of sample ``index`` (segmentation sources only).

        Returns:
            (H, W) uint8 class indices of the image's size, 255 = ignore.
        """
        raise SourceError(f"{self.spec} has no masks; segmentation needs a seg: manifest (image and mask columns)")

    def location(self, index: int) -> str:
        """Where sample ``index`` comes from (a path, or file + row), for error messages."""
        return self.ids[index]

    def decode_options(self) -> dict[str, Any]:
        """Decoding choices that change pixels (e.g. the alpha policy); they enter the fingerprint."""
        return {}

    def batched_views(self) -> bool:
        """Whether :meth:`load_views` loads several views of a sample together (volume slices)."""
        return False

    def load_views(self, index: int, views: Sequence[int]) -> np.ndarray | None:
        """Several views of one sample decoded together, or None when the source has no such path.

        Returns:
            (k, H, W, 3) uint8 or float32 in [0, 1], equal to ``load_view`` of each view.
        """
        return None

    def use_fast_decode(self, side: int) -> bool:
        """Decode large JPEGs at reduced size, keeping the short side >= ``side`` (see ``read_image``).

        Returns:
            Whether this source has such files (then the choice enters :meth:`decode_options`).
        """
        return False

    def label_policy(self) -> dict[str, Any]:
        """Choices that change labels (the multi-label uncertain/blank policy); fingerprinted and stored."""
        return {}

    @abc.abstractmethod
    def content_digest(self) -> str:
        """Hex digest of the image content this source reads (files, bytes or array checksums)."""

    def subset_digest(self, indices: np.ndarray) -> str:
        """Content digest of some rows only; sources over files override it to read just those."""
        h = hashlib.sha256(self.content_digest().encode())
        h.update(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
        return h.hexdigest()

    def fingerprint(self) -> str:
        """Hex sha256 over content, ids, labels, split assignment, groups and classes."""
        h = hashlib.sha256()
        h.update(self.content_digest().encode())
        h.update("\0".join(self.ids).encode())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.splits, dtype=np.int8).tobytes())
        h.update("\0".join(self.groups or []).encode())
        h.update("\0".join(self.classes).encode())
        if self.label_policy():  # only multi-label sources have one: older fingerprints are unchanged
            h.update(str(sorted(self.label_policy().items())).encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """Provenance of this source, stored in the embedding store's attributes."""
        counts = {SPLITS[c]: int(n) for c, n in zip(*np.unique(self.splits, return_counts=True), strict=True)}
        return {
            "spec": self.spec,
            "name": self.name,
            "task": self.task,
            "classes": list(self.classes),
            "n_samples": len(self),
            "split_counts": counts,
            "has_groups": self.groups is not None,
            **_label_record(self),
            **({"views": list(self.views), "view_kind": self.view_kind} if self.views is not None else {}),
        }


class SubsetSource(Source):
    """A view of another source restricted to some of its rows, in their original order."""

    def __init__(self, base: Source, indices: Sequence[int], *, label: str) -> None:
        idx = np.asarray(indices, dtype=np.int64)
        self.base = base
        self.indices = idx
        self.spec = f"{base.spec}[{label}]"
        self.name = f"{base.name}-{label}"
        self.classes = base.classes
        self.task = base.task
        self.ids = [base.ids[i] for i in idx]
        self.labels = base.labels[idx]
        self.splits = base.splits[idx]
        self.groups = None if base.groups is None else [base.groups[i] for i in idx]
        self.views, self.view_kind = base.views, base.view_kind

    def load_image(self, index: int) -> np.ndarray:
        return self.base.load_image(int(self.indices[index]))

    def view_mask(self) -> np.ndarray:
        return self.base.view_mask()[self.indices]

    def load_mask(self, index: int) -> np.ndarray:
        return self.base.load_mask(int(self.indices[index]))

    def load_view(self, index: int, view: int) -> np.ndarray:
        return self.base.load_view(int(self.indices[index]), view)

    def decode_options(self) -> dict[str, Any]:
        return self.base.decode_options()

    def use_fast_decode(self, side: int) -> bool:
        return self.base.use_fast_decode(side)

    def batched_views(self) -> bool:
        return self.base.batched_views()

    def load_views(self, index: int, views: Sequence[int]) -> np.ndarray | None:
        return self.base.load_views(int(self.indices[index]), views)

    def label_policy(self) -> dict[str, Any]:
        return self.base.label_policy()

    def location(self, index: int) -> str:
        return self.base.location(int(self.indices[index]))

    def content_digest(self) -> str:
        return self.base.subset_digest(self.indices)


def limit_per_split(source: Source, limit: int) -> Source:
    """Keep the first ``limit`` samples of every split (deterministic; for smoke tests and demos).

    Raises:
        ConfigError: ``limit`` is not positive.
    """
    if limit < 1:
        raise ConfigError(f"SourceRequest(limit={limit}) must be a positive number of samples per split")
    keep: list[int] = []
    for code in np.unique(source.splits):
        keep.extend(np.flatnonzero(source.splits == code)[:limit].tolist())
    keep.sort()
    if len(keep) == len(source):
        return source
    return SubsetSource(source, keep, label=f"first{limit}")


def _label_record(source: Source) -> dict[str, Any]:
    """Multi-label provenance: the label policy and, per label, positives, negatives and ignored entries."""
    if source.labels.ndim != 2:
        return {}
    counts = {
        name: {"positive": int((col == 1).sum()), "negative": int((col == 0).sum()), "ignored": int((col < 0).sum())}
        for name, col in zip(source.classes, source.labels.T, strict=True)
    }
    return {"label_policy": source.label_policy(), "label_counts": counts}
