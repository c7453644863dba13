"""What data a run reads: the specification plus every option that changes the records it yields."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probe.sources.images import RgbaPolicy
from probe.sources.multilabel import MultiLabelOptions
from probe.sources.volumes import SlicePolicy

if TYPE_CHECKING:
    from probe.sources._base import Source


@dataclass(frozen=True)
class SourceRequest:
    """A data request, built once where a run starts (the CLI or a Python call) and passed down unchanged."""

    spec: str  # PREFIX:ARGUMENT[?key=value&...], e.g. "medmnist:bloodmnist" or "folder:/data/isic?split=70,10,20"
    data_root: str | None = None  # folder holding dataset files (MedMNIST .npz); None: PROBE_DATA_ROOT, cache
    rgba: RgbaPolicy = "composite"  # alpha channel of image files: "composite" on black, or "reject"
    limit: int | None = None  # keep only the first N samples of each split (a quick look)
    slices: SlicePolicy | None = None  # 3D volumes: which slices along which axis (None: the source's default)
    multilabel: MultiLabelOptions | None = None  # csv manifests: label columns, uncertain/blank policies

    @classmethod
    def of(cls, source: str | SourceRequest | os.PathLike[str]) -> SourceRequest:
        """A request from a specification string, or the request itself."""
        return source if isinstance(source, SourceRequest) else cls(spec=os.fspath(source))

    def open(self) -> Source:
        """Open the source (see :func:`probe.sources.open_source`)."""
        from probe.sources import open_source

        return open_source(
            self.spec,
            data_root=self.data_root,
            rgba=self.rgba,
            limit=self.limit,
            slices=self.slices,
            multilabel=self.multilabel,
        )

    def canonical(self) -> str:
        """The specification's canonical form (:func:`probe.sources.canonical_spec`)."""
        from probe.sources import canonical_spec

        return canonical_spec(self.spec)
