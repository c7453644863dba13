"""Data sources: parse ``prefix:argument`` specifications into :class:`Source` objects."""

from __future__ import annotations

import os
from collections.abc import Callable

from probe.errors import ConfigError, ProbeError, RegistryError, UnknownSourceError
from probe.sources._base import SPLITS, Source, SubsetSource, limit_per_split, split_code
from probe.sources._labels import ALLOW_LABEL_OPTION, check_labels, pop_allowed_labels
from probe.sources._options import check_option_keys, split_spec_options, with_options
from probe.sources.dicom import DICOM_OPTION_KEYS, open_dicom, open_dicom_csv
from probe.sources.files import FileListSource, manifest_header, open_folder, open_manifest
from probe.sources.hf_dataset import OPTION_KEYS as HF_OPTION_KEYS
from probe.sources.hf_dataset import HFDatasetSource
from probe.sources.images import RgbaPolicy, read_image
from probe.sources.medmnist import MedMNISTSource, medmnist_info, parse_flag
from probe.sources.multilabel import (
    MultiLabelFileSource,
    MultiLabelOptions,
    is_multilabel_manifest,
    open_multilabel_manifest,
)
from probe.sources.multimodal import MultiModalSource, modality_columns, open_multimodal_manifest
from probe.sources.nifti import NiftiSource
from probe.sources.request import SourceRequest
from probe.sources.segmentation import OPTION_KEYS as SEG_OPTION_KEYS
from probe.sources.segmentation import SegmentationSource
from probe.sources.splitting import SplitConfig, make_splits
from probe.sources.volumes import MedMNIST3DSource, SlicePolicy, VolumeSource, with_slices

__all__ = [
    "SPLITS",
    "FileListSource",
    "HFDatasetSource",
    "MedMNIST3DSource",
    "MedMNISTSource",
    "MultiLabelFileSource",
    "MultiLabelOptions",
    "MultiModalSource",
    "NiftiSource",
    "SegmentationSource",
    "SlicePolicy",
    "Source",
    "SourceRequest",
    "SubsetSource",
    "VolumeSource",
    "canonical_spec",
    "limit_per_split",
    "open_source",
    "read_image",
    "register_source",
    "same_source",
    "source_prefixes",
    "split_code",
]

#: A factory receives the part after the prefix and the common options.
SourceFactory = Callable[..., Source]
_SOURCES: dict[str, SourceFactory] = {}
_OPTION_KEYS: dict[str, tuple[str, ...]] = {}  # spec options (``?key=value``) a factory accepts as ``options=``
_CANONICAL: dict[str, Callable[[str], str]] = {}  # the argument's canonical form (same data ⇔ same form)


def _same_path(arg: str) -> str:
    return os.path.realpath(os.path.expanduser(arg))


def register_source(
    prefix: str,
    factory: SourceFactory,
    *,
    options: tuple[str, ...] = (),
    canonical: Callable[[str], str] = _same_path,
) -> None:
    """Register a source factory under ``prefix`` (refuses duplicates).

    Args:
        prefix: the part before ``:`` in a specification.
        factory: builds the source from the argument after the prefix.
        options: spec option keys (``?key=value``) the factory accepts.
        canonical: the argument's canonical form (default: the real path of a file or folder).
    """
    if prefix in _SOURCES:
        raise RegistryError(f"source prefix {prefix!r} is already registered")
    _SOURCES[prefix] = factory
    _OPTION_KEYS[prefix] = options
    _CANONICAL[prefix] = canonical


def source_prefixes() -> list[str]:
    """The registered source prefixes, sorted."""
    return sorted(_SOURCES)


def _medmnist(arg: str, *, data_root: str | None, rgba: RgbaPolicy) -> Source:
    flag, _ = parse_flag(arg)
    if medmnist_info()[flag]["ndim"] == 3:
        return MedMNIST3DSource(arg, data_root=data_root)
    return MedMNISTSource(arg, data_root=data_root)


def _folder(arg: str, *, data_root: str | None, rgba: RgbaPolicy) -> Source:
    return open_folder(arg, rgba=rgba)


def _csv(arg: str, *, data_root: str | None, rgba: RgbaPolicy, options: dict[str, str] | None = None) -> Source:
    if is_multilabel_manifest(arg):  # label:<name> columns (DICOM rows take window/frames too)
        return open_multilabel_manifest(arg, options=MultiLabelOptions(), rgba=rgba, spec_options=options)
    if options:  # window/frames: a manifest listing DICOM files
        return open_dicom_csv(arg, options=options, rgba=rgba)
    if modality_columns(manifest_header(arg)):
        return open_multimodal_manifest(arg, rgba=rgba)
    return open_manifest(arg, rgba=rgba)


def _dicom(arg: str, *, data_root: str | None, rgba: RgbaPolicy, options: dict[str, str] | None = None) -> Source:
    return open_dicom(arg, options=options, rgba=rgba)


def _nifti(arg: str, *, data_root: str | None, rgba: RgbaPolicy) -> Source:
    return NiftiSource(arg)


def _medmnist_key(arg: str) -> str:
    name, _, size = arg.lower().partition("@")
    return f"{name}@{size or '28'}"


register_source("medmnist", _medmnist, canonical=_medmnist_key)
register_source("folder", _folder)
register_source("csv", _csv, options=DICOM_OPTION_KEYS)
register_source("dicom", _dicom, options=DICOM_OPTION_KEYS)
register_source("nifti", _nifti)


def _seg(arg: str, *, data_root: str | None, rgba: RgbaPolicy, options: dict[str, str] | None = None) -> Source:
    return SegmentationSource(arg, options=options)


register_source("seg", _seg, options=SEG_OPTION_KEYS)


def _hf_dataset(arg: str, *, data_root: str | None, rgba: RgbaPolicy, options: dict[str, str] | None = None) -> Source:
    return HFDatasetSource(arg, options=options, rgba=rgba)


def _hf_name(arg: str) -> str:  # a saved folder by its real path, a hub name as written
    return _same_path(arg) if os.path.exists(os.path.expanduser(arg)) else arg


register_source("hf-dataset", _hf_dataset, options=HF_OPTION_KEYS, canonical=_hf_name)


def _prefix_and_argument(spec: str) -> tuple[str, str]:
    prefix, sep, arg = spec.partition(":")
    if not sep or prefix not in _SOURCES:
        raise UnknownSourceError(
            f"unknown data source {spec!r}; write PREFIX:ARGUMENT with a prefix among "
            f"{', '.join(source_prefixes())} (e.g. medmnist:bloodmnist, folder:/data/isic)"
        )
    return prefix, arg


def canonical_spec(spec: str) -> str:
    """The one form of a specification: two specifications name the same data exactly when it is equal.

    The argument is canonicalised by its source (real paths for files and folders, ``name@size`` for
    MedMNIST); spec options are sorted, ``split`` ratios are normalised to fractions and get their
    default ``split_seed=0``, numbers are written alike and words lower-cased. The specification is
    not opened (no file is read), so this also works for data that is not on this machine.

    Raises:
        UnknownSourceError: the prefix is not registered.
        ConfigError: a malformed option.
    """
    prefix, sep, arg = spec.strip().partition(":")
    if not sep or prefix not in _SOURCES:
        raise UnknownSourceError(
            f"unknown data source {spec!r}; write PREFIX:ARGUMENT with a prefix among {', '.join(source_prefixes())}"
        )
    arg, options = split_spec_options(arg, prefix=prefix)
    split = SplitConfig.pop_from(options)
    if split is not None:
        options.update(split.to_options())
    for key, value in options.items():
        try:
            options[key] = ",".join(f"{float(v):.6g}" for v in value.split(","))
        except ValueError:
            options[key] = value.lower()
    if ALLOW_LABEL_OPTION in options:  # a set of labels: order and case do not matter
        options[ALLOW_LABEL_OPTION] = ",".join(sorted({v.strip() for v in options[ALLOW_LABEL_OPTION].split(",")}))
    return with_options(f"{prefix}:{_CANONICAL[prefix](arg)}", options)


def same_source(spec_a: str, spec_b: str) -> bool:
    """Whether two specifications name the same data (see :func:`canonical_spec`); unparsable ones never match."""
    try:
        return canonical_spec(spec_a) == canonical_spec(spec_b)
    except ProbeError:
        return False


def open_source(
    spec: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    rgba: RgbaPolicy = "composite",
    limit: int | None = None,
    slices: SlicePolicy | None = None,
    multilabel: MultiLabelOptions | None = None,
) -> Source:
    """Open a data source from its specification.

    Args:
        spec: ``medmnist:<name>[@size]``, ``folder:<dir>`` or ``csv:<manifest.csv>``.
        data_root: folder holding dataset files (MedMNIST ``.npz``).
        rgba: alpha-channel policy for image files.
        limit: keep only the first ``limit`` samples of each split.
        slices: which slices of 3D volumes to embed (an error for 2D sources unless the default).
        multilabel: label columns and uncertain/blank policies of a multi-label ``csv:`` manifest
            (None: a manifest is multi-label when its header has ``label:<name>`` columns).

    Any source takes ``?split=TRAIN,VAL,TEST&split_seed=N`` (group-aware splits of its unsplit rows,
    see :mod:`probe.sources.splitting`) and ``?allow_label=nan,none`` (keep labels spelling a missing
    value as classes; they are refused otherwise); ``dicom:`` and ``csv:`` also take ``window`` and ``frames``.

    Raises:
        UnknownSourceError: the prefix is not registered.
        ConfigError: an option the source does not accept, or a bad option value.
        SourceError: the data cannot be read, or a class label spells a missing value (``NaN``, ``None``,
            ``null``) without ``allow_label``.
    """
    prefix, arg = _prefix_and_argument(spec)
    arg, options = split_spec_options(arg, prefix=prefix)
    split = SplitConfig.pop_from(options)
    allowed = pop_allowed_labels(options)
    check_option_keys(options, _OPTION_KEYS[prefix], spec=spec)
    extra = {"options": options} if options else {}
    if multilabel is not None:  # label columns or uncertainty policies given explicitly: csv manifests only
        if prefix != "csv":
            raise ConfigError(
                f"multi-label options (MultiLabelOptions) apply to csv: manifests, not {spec!r}; drop them"
            )
        source: Source = open_multilabel_manifest(arg, options=multilabel, rgba=rgba, spec_options=options)
    else:
        source = _SOURCES[prefix](arg, data_root=None if data_root is None else str(data_root), rgba=rgba, **extra)
    source = check_labels(source, allowed)
    if split is not None:
        source = make_splits(source, split)
    if slices is not None:
        source = with_slices(source, slices)
    return source if limit is None else limit_per_split(source, limit)
