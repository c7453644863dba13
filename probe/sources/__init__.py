"""Data sources: parse ``prefix:argument`` specifications into :class:`Source` objects."""

from __future__ import annotations

import os
from collections.abc import Callable

from probe.errors import RegistryError, UnknownSourceError
from probe.sources._base import SPLITS, Source, SubsetSource, limit_per_split, split_code
from probe.sources.files import FileListSource, open_folder, open_manifest
from probe.sources.images import RgbaPolicy, read_image
from probe.sources.medmnist import MedMNISTSource

__all__ = [
    "SPLITS",
    "FileListSource",
    "MedMNISTSource",
    "Source",
    "SubsetSource",
    "limit_per_split",
    "open_source",
    "read_image",
    "register_source",
    "source_prefixes",
    "split_code",
]

#: A factory receives the part after the prefix and the common options.
SourceFactory = Callable[..., Source]
_SOURCES: dict[str, SourceFactory] = {}


def register_source(prefix: str, factory: SourceFactory) -> None:
    """Register a source factory under ``prefix`` (refuses duplicates)."""
    if prefix in _SOURCES:
        raise RegistryError(f"source prefix {prefix!r} is already registered")
    _SOURCES[prefix] = factory


def source_prefixes() -> list[str]:
    """The registered source prefixes, sorted."""
    return sorted(_SOURCES)


def _medmnist(arg: str, *, data_root: str | None, rgba: RgbaPolicy) -> Source:
    return MedMNISTSource(arg, data_root=data_root)


def _folder(arg: str, *, data_root: str | None, rgba: RgbaPolicy) -> Source:
    return open_folder(arg, rgba=rgba)


def _csv(arg: str, *, data_root: str | None, rgba: RgbaPolicy) -> Source:
    return open_manifest(arg, rgba=rgba)


register_source("medmnist", _medmnist)
register_source("folder", _folder)
register_source("csv", _csv)


def open_source(
    spec: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    rgba: RgbaPolicy = "composite",
    limit: int | None = None,
) -> Source:
    """Open a data source from its specification.

    Args:
        spec: ``medmnist:<name>[@size]``, ``folder:<dir>`` or ``csv:<manifest.csv>``.
        data_root: folder holding dataset files (MedMNIST ``.npz``).
        rgba: alpha-channel policy for image files.
        limit: keep only the first ``limit`` samples of each split.

    Raises:
        UnknownSourceError: the prefix is not registered.
    """
    prefix, sep, arg = spec.partition(":")
    if not sep or prefix not in _SOURCES:
        raise UnknownSourceError(
            f"unknown data source {spec!r}; write PREFIX:ARGUMENT with a prefix among "
            f"{', '.join(source_prefixes())} (e.g. medmnist:bloodmnist, folder:/data/isic)"
        )
    source = _SOURCES[prefix](arg, data_root=None if data_root is None else str(data_root), rgba=rgba)
    return source if limit is None else limit_per_split(source, limit)
