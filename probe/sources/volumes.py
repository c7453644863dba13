"""3D volumes embedded slice-wise: slice policies, the :class:`VolumeSource` base and MedMNIST 3D.

A volume source is a multi-view source (:attr:`Source.views`): view ``k`` of a sample is the k-th
slice the policy selects along the chosen array axis. Volumes of different depth select different
numbers of slices; the views a volume lacks are absent in :meth:`Source.view_mask`. Slices of a
uint8 volume keep their values; any other dtype is min-max rescaled to [0, 1] over the whole
volume (not per slice, so slices of one volume stay comparable).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.errors import ConfigError, SourceError
from probe.sources._base import Source
from probe.sources.images import rescale_to_unit, to_three_channels
from probe.sources.medmnist import MedMNISTSource

SLICE_MODES: tuple[str, ...] = ("all", "every", "central")


@dataclass(frozen=True)
class SlicePolicy:
    """Which slices of a volume are embedded (part of the store fingerprint)."""

    axis: int | None = None  # array axis slices are cut along (0-2); None: the source's default axis
    mode: str = "all"  # "all", "every" (every n-th slice from the first) or "central" (the central n)
    n: int = 1  # the step of "every", the count of "central"

    def __post_init__(self) -> None:
        if self.mode not in SLICE_MODES:
            raise ConfigError(f"SlicePolicy(mode={self.mode!r}) is unknown; use all, every:N or central:K")
        if self.n < 1:
            raise ConfigError(f"slice policy {self.mode}:{self.n}: N must be a positive integer, e.g. {self.mode}:4")
        if self.axis is not None and self.axis not in (0, 1, 2):
            raise ConfigError(f"SlicePolicy(axis={self.axis}) is invalid; a volume has array axes 0, 1 and 2")

    @classmethod
    def parse(cls, text: str | None, *, axis: int | None = None) -> SlicePolicy:
        """``"all"``, ``"every:4"`` or ``"central:16"`` (None: all slices)."""
        mode, sep, count = (text or "all").strip().lower().partition(":")
        if mode == "all" and not sep:
            return cls(axis=axis)
        if mode not in ("every", "central") or not count.strip().isdigit():
            raise ConfigError(f"slice policy {text!r} is invalid; use all, every:N (every N-th slice) or central:K")
        return cls(axis=axis, mode=mode, n=int(count))

    def text(self) -> str:
        """The policy as text: ``all``, ``every:N`` or ``central:K`` (what :meth:`parse` reads)."""
        return "all" if self.mode == "all" else f"{self.mode}:{self.n}"


def select_slices(depth: int, policy: SlicePolicy) -> np.ndarray:
    """Slice positions (ascending) that ``policy`` keeps from a volume ``depth`` slices deep.

    ``every:N`` keeps 0, N, 2N, ...; ``central:K`` keeps the K middle slices (all when K >= depth;
    with an odd remainder the extra slice is on the high side).

    Returns:
        (k,) int64 positions.
    """
    if policy.mode == "every":
        return np.arange(0, depth, policy.n, dtype=np.int64)
    if policy.mode == "central" and policy.n < depth:
        start = (depth - policy.n) // 2
        return np.arange(start, start + policy.n, dtype=np.int64)
    return np.arange(depth, dtype=np.int64)


class VolumeSource(Source):
    """A source of 3D volumes whose views are the slices a :class:`SlicePolicy` selects.

    Subclasses set the usual :class:`Source` attributes, call :meth:`_init_views` last in
    ``__init__``, and implement :meth:`volume_shape` and :meth:`read_volume`.
    """

    default_axis: int = 0  # the axis sliced when the policy names none
    view_kind = "slices"
    policy: SlicePolicy

    @abc.abstractmethod
    def volume_shape(self, index: int) -> tuple[int, int, int]:
        """Shape of sample ``index``'s volume (cheap: no voxel data read)."""

    @abc.abstractmethod
    def read_volume(self, index: int) -> np.ndarray:
        """(A, B, C) voxels of sample ``index`` (any numeric dtype).

        Raises:
            ImageDecodeError: the file is missing or corrupt.
        """

    @property
    def axis(self) -> int:
        return self.default_axis if self.policy.axis is None else self.policy.axis

    def _init_views(self, policy: SlicePolicy | None = None) -> None:
        self.policy = policy or SlicePolicy()
        self._cache: tuple[int, np.ndarray] | None = None
        counts = [len(select_slices(self.volume_shape(i)[self.axis], self.policy)) for i in range(len(self))]
        self._counts = np.asarray(counts, dtype=np.int64)
        width = len(str(max(int(self._counts.max(initial=1)) - 1, 1)))
        self.views = tuple(f"slice{k:0{width}d}" for k in range(int(self._counts.max(initial=1))))

    def with_slices(self, policy: SlicePolicy) -> VolumeSource:
        """A copy of this source selecting slices by ``policy``."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._init_views(policy)
        return clone

    def view_mask(self) -> np.ndarray:
        assert self.views is not None
        return np.arange(len(self.views))[None, :] < self._counts[:, None]

    def slice_positions(self, index: int) -> np.ndarray:
        """(k,) positions along the axis of the slices embedded for sample ``index``."""
        return select_slices(self.volume_shape(index)[self.axis], self.policy)

    def _volume(self, index: int) -> np.ndarray:
        # consecutive views of one batch come from one volume: keep the last one decoded
        if self._cache is None or self._cache[0] != index:
            vol = np.asarray(self.read_volume(index))
            if vol.ndim != 3:
                raise SourceError(f"{self.location(index)}: expected a 3D volume, got shape {vol.shape}")
            self._cache = (index, vol if vol.dtype == np.uint8 else rescale_to_unit(vol))
        return self._cache[1]

    def load_view(self, index: int, view: int) -> np.ndarray:
        """Slice ``view`` of the policy's selection as (H, W, 3) uint8 or float32 in [0, 1]."""
        position = int(self.slice_positions(index)[view])
        return to_three_channels(np.take(self._volume(index), position, axis=self.axis))

    def batched_views(self) -> bool:
        return True

    def load_views(self, index: int, views: Sequence[int]) -> np.ndarray:
        """Slices ``views`` of the policy's selection as (k, H, W, 3), from one decode of the volume."""
        positions = self.slice_positions(index)[np.asarray(views, dtype=np.int64)]
        slab = np.moveaxis(np.take(self._volume(index), positions, axis=self.axis), self.axis, 0)
        return np.ascontiguousarray(np.repeat(slab[..., None], 3, axis=-1))

    def load_image(self, index: int) -> np.ndarray:
        raise SourceError(
            f"{self.spec} holds 3D volumes: embed them slice-wise (probe extract) or read single slices "
            "with load_view(index, view)"
        )

    def decode_options(self) -> dict[str, Any]:
        return {
            **super().decode_options(),
            "slice_axis": self.axis,
            "slices": self.policy.text(),
            "intensity": "uint8 kept; other dtypes min-max per volume",
        }

    def __getstate__(self) -> dict[str, Any]:
        parent = getattr(super(), "__getstate__", None)  # e.g. MedMNISTSource drops its arrays
        state = dict((parent() if parent is not None else None) or self.__dict__)
        state["_cache"] = None  # DataLoader workers decode their own volumes
        return state


class MedMNIST3DSource(VolumeSource, MedMNISTSource):
    """A 3D MedMNIST subset (``medmnist:adrenalmnist3d[@64]``): (N, D, H, W) uint8 volumes, sliced along D.

    Args:
        name: subset name with optional size, e.g. ``"adrenalmnist3d@64"``.
        data_root: folder holding the official ``.npz`` files (optional).
        download: whether to try the official download when no local file is found.
        policy: slice policy (default: every slice along axis 0, the depth axis).
    """

    NDIM = 3

    def __init__(
        self,
        name: str,
        *,
        data_root: str | os.PathLike[str] | None = None,
        download: bool = True,
        policy: SlicePolicy | None = None,
    ) -> None:
        MedMNISTSource.__init__(self, name, data_root=data_root, download=download)
        self._init_views(policy)

    def volume_shape(self, index: int) -> tuple[int, int, int]:
        return (self.size, self.size, self.size)

    def read_volume(self, index: int) -> np.ndarray:
        return self._array(index)


def with_slices(source: Source, policy: SlicePolicy) -> Source:
    """Apply a slice policy to a volume source; a non-default policy on a 2D source is an error."""
    if isinstance(source, VolumeSource):
        return source.with_slices(policy)
    if policy != SlicePolicy():
        raise ConfigError(
            f"a slice policy ({policy.text()}) applies to 3D volumes, but {source.spec} holds 2D images; drop it"
        )
    return source
