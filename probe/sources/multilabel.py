"""Multi-label ``csv:`` manifests (CheXpert style): several 0/1 label columns with uncertain entries.

A manifest becomes multi-label when label columns are named (``--label-columns A,B``) or when its
header holds columns named ``label:<name>`` (then those are the labels, named without the prefix).
Every label cell is one of:

- ``1`` (positive) or ``0`` (negative); ``1.0``/``0.0`` are accepted too;
- ``-1`` (uncertain, CheXpert's "u"), resolved by the **uncertain policy**: ``ignore`` (the entry
  is masked out of training and scoring for that label), ``zeros`` (negative) or ``ones`` (positive);
- blank (not mentioned), resolved by the **blank policy**: ``zeros`` (negative, CheXpert's
  convention) or ``ignore``.

The source's labels are (n, C) int64 after the policies: 1, 0, or :data:`IGNORED` (-1) for a
masked entry. The policies are part of the source's fingerprint and are written into the store's
attributes (``source.label_policy``), so stores made with different policies never mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.errors import ConfigError, SourceError
from probe.sources._options import with_options
from probe.sources.files import (
    GROUP_COLUMNS,
    ID_COLUMNS,
    PATH_COLUMNS,
    SPLIT_COLUMNS,
    FileListSource,
    _pick,
    manifest_header,
    read_manifest,
)
from probe.sources.images import RgbaPolicy

if TYPE_CHECKING:
    from probe.sources._dicom_pixels import DicomOptions

UNCERTAIN_POLICIES: tuple[str, ...] = ("ignore", "zeros", "ones")
BLANK_POLICIES: tuple[str, ...] = ("zeros", "ignore")
#: Header prefix that marks a label column when no ``label_columns`` are given.
LABEL_PREFIX = "label:"
#: Stored code of an entry masked out by a policy (never trained on, never scored).
IGNORED = -1
# Raw codes before the policies are applied.
_UNCERTAIN, _BLANK = -1, -2
_VALUES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": _UNCERTAIN, "-1.0": _UNCERTAIN, "": _BLANK}


@dataclass(frozen=True)
class MultiLabelOptions:
    """How a manifest's label columns are read; every field changes the stored labels."""

    label_columns: tuple[str, ...] | None = None  # label column names; None: the ``label:<name>`` columns
    uncertain: str = "ignore"  # -1 entries: "ignore" (masked), "zeros" or "ones"
    blank: str = "zeros"  # empty entries (not mentioned): "zeros" or "ignore"

    def __post_init__(self) -> None:
        if self.uncertain not in UNCERTAIN_POLICIES:
            raise ConfigError(
                f"MultiLabelOptions(uncertain={self.uncertain!r}) is invalid; "
                f"use one of {', '.join(UNCERTAIN_POLICIES)}"
            )
        if self.blank not in BLANK_POLICIES:
            raise ConfigError(
                f"MultiLabelOptions(blank={self.blank!r}) is invalid; use one of {', '.join(BLANK_POLICIES)}"
            )
        if self.label_columns is not None:
            cols = tuple(c.strip() for c in self.label_columns if c.strip())
            if len(cols) < 2 or len(set(cols)) != len(cols):
                raise ConfigError(
                    f"MultiLabelOptions(label_columns={','.join(self.label_columns)!r}) must name at least 2 "
                    "distinct columns "
                    "(a single label column is an ordinary binary manifest)"
                )
            object.__setattr__(self, "label_columns", cols)


def apply_policy(raw: np.ndarray, options: MultiLabelOptions) -> np.ndarray:
    """Resolve raw codes (1, 0, -1 uncertain, -2 blank) into stored labels (1, 0, or IGNORED).

    Args:
        raw: (n, C) int raw codes.
        options: the policies.

    Returns:
        (n, C) int64 labels.
    """
    out = raw.astype(np.int64)
    out[raw == _UNCERTAIN] = {"ignore": IGNORED, "zeros": 0, "ones": 1}[options.uncertain]
    out[raw == _BLANK] = {"ignore": IGNORED, "zeros": 0}[options.blank]
    return out


class MultiLabelFileSource(FileListSource):
    """Images on disk with several binary labels each (see the module docstring for the codes).

    Args:
        spec: canonical specification, ``"csv:<manifest>"``.
        root: folder that relative paths and ids refer to.
        paths: image paths, one per sample.
        raw: (n, C) int raw label codes (1, 0, -1 uncertain, -2 blank).
        names: the C label names.
        splits: split name per sample.
        groups: group (patient) id per sample, or ``None``.
        ids: sample ids.
        options: the uncertain and blank policies.
        rgba: alpha-channel policy passed to the decoder.
        dicom: window and frame policy for DICOM rows (None: the defaults).
    """

    def __init__(
        self,
        *,
        spec: str,
        root: Path,
        paths: Sequence[Path],
        raw: np.ndarray,
        names: Sequence[str],
        splits: Sequence[str],
        groups: Sequence[str] | None,
        ids: Sequence[str],
        options: MultiLabelOptions,
        rgba: RgbaPolicy = "composite",
        dicom: DicomOptions | None = None,
    ) -> None:
        if len(paths) < 2:
            raise SourceError(f"{spec}: {len(paths)} image(s); a multi-label set needs at least 2")
        # The parent reads paths, splits, groups and ids; its single-label classes are placeholders
        # (it insists on two), replaced by the label names right after.
        super().__init__(
            spec=spec,
            root=root,
            paths=paths,
            labels=[str(i % 2) for i in range(len(paths))],
            splits=splits,
            groups=groups,
            ids=ids,
            rgba=rgba,
            dicom=dicom,
        )
        self.classes = tuple(names)
        self.task = "multilabel"
        self.options = options
        self.raw = np.asarray(raw, dtype=np.int8)
        self.labels = apply_policy(self.raw, options)

    def label_policy(self) -> dict[str, Any]:
        return {"uncertain": self.options.uncertain, "blank": self.options.blank}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["raw_label_counts"] = {
            name: {
                kind: int(np.count_nonzero(self.raw[:, j] == code))
                for kind, code in (("positive", 1), ("negative", 0), ("uncertain", _UNCERTAIN), ("blank", _BLANK))
            }
            for j, name in enumerate(self.classes)
        }
        return out


def label_columns_of(header: Sequence[str], options: MultiLabelOptions) -> list[tuple[str, str]] | None:
    """(column, label name) pairs of a manifest header, or None when it is not multi-label.

    Raises:
        SourceError: a named label column is missing from the header.
    """
    if options.label_columns is not None:
        missing = [c for c in options.label_columns if c not in header]
        if missing:
            raise SourceError(
                f"MultiLabelOptions(label_columns=...) names {', '.join(map(repr, missing))} but the manifest "
                "has no such column "
                f"(found: {', '.join(header)})"
            )
        return [(c, c) for c in options.label_columns]
    pairs = [(h, h[len(LABEL_PREFIX) :].strip()) for h in header if h.strip().lower().startswith(LABEL_PREFIX)]
    return pairs or None


def is_multilabel_manifest(manifest: str) -> bool:
    """Whether a manifest's header marks label columns with the ``label:`` prefix."""
    return label_columns_of(manifest_header(manifest), MultiLabelOptions()) is not None


def _parse_cell(text: str, *, manifest: str, line: int, column: str) -> int:
    code = _VALUES.get(text.strip())
    if code is None:
        raise SourceError(
            f"csv:{manifest}: line {line}, column {column!r} holds {text!r}; a label cell must be 1, 0, "
            "-1 (uncertain) or empty (not mentioned)"
        )
    return code


def open_multilabel_manifest(
    manifest: str,
    *,
    options: MultiLabelOptions,
    rgba: RgbaPolicy = "composite",
    spec_options: dict[str, str] | None = None,
) -> MultiLabelFileSource:
    """A CSV manifest with a path column, several label columns, and optional split, group and id columns.

    Args:
        manifest: the CSV file.
        options: label columns and the uncertain/blank policies.
        rgba: alpha-channel policy.
        spec_options: ``window``/``frames`` options of ``csv:<manifest>?window=...`` for DICOM rows.

    Raises:
        SourceError: missing file or columns, an empty path, or a label cell outside 1/0/-1/blank.
        ConfigError: a bad DICOM window, or ``frames=all`` (per-frame rows need ``dicom:``).
    """
    dicom = None
    if spec_options:
        from probe.sources._dicom_pixels import DicomOptions

        dicom = DicomOptions.from_options(spec_options)
        if dicom.frames == "all":
            raise ConfigError(f"csv:{manifest}?frames=all: per-frame rows are not supported in multi-label manifests")
    file, rows, header = read_manifest(manifest)
    pairs = label_columns_of(header, options)
    if pairs is None or len(pairs) < 2:
        raise SourceError(
            f"csv:{manifest}: no multi-label columns; name them with MultiLabelOptions(label_columns=A,B) or call them "
            f"'{LABEL_PREFIX}<name>' in the header (found: {', '.join(header)})"
        )
    path_col = _pick(header, PATH_COLUMNS, "image path", file, required=True)
    split_col = _pick(header, SPLIT_COLUMNS, "split", file, required=False)
    group_col = _pick(header, GROUP_COLUMNS, "group", file, required=False)
    id_col = _pick(header, ID_COLUMNS, "id", file, required=False)
    assert path_col is not None
    paths, splits, groups, ids, raw = [], [], [], [], []
    for line, row in enumerate(rows, start=2):
        raw_path = (row.get(path_col) or "").strip()
        if not raw_path:
            raise SourceError(f"csv:{manifest}: line {line} has an empty {path_col!r} value")
        p = Path(raw_path).expanduser()
        paths.append(p if p.is_absolute() else file.parent / p)
        raw.append([_parse_cell(row.get(c) or "", manifest=manifest, line=line, column=c) for c, _ in pairs])
        splits.append((row.get(split_col) or "").strip() if split_col else "")
        groups.append((row.get(group_col) or "").strip() if group_col else "")
        ids.append((row.get(id_col) or "").strip() if id_col else raw_path)
    return MultiLabelFileSource(
        spec=f"csv:{file}" if dicom is None else with_options(f"csv:{file}", dicom.to_options()),
        root=file.parent,
        paths=paths,
        raw=np.array(raw, dtype=np.int8),
        names=[name for _, name in pairs],
        splits=splits,
        groups=groups if group_col else None,
        ids=ids,
        options=options,
        rgba=rgba,
        dicom=dicom,
    )
