"""``dicom:<dir or manifest.csv>[?window=...&frames=...]``: DICOM files as a labelled source.

Layouts: a folder with one subfolder per class (optionally under ``train/ val/ test/``), holding
``.dcm``/``.dicom``/``.dic`` files or extension-less files with the DICOM preamble; or a CSV
manifest with the columns of ``csv:`` (path, label, optional split, group, id). The group (patient)
of a row is the manifest's group value, else the file's PatientID, else the file itself, so the
frames of one file never land in two splits.

Decoding (see :mod:`probe.sources._dicom_pixels`): ``window=auto`` (default; the file's VOI LUT,
else its first window centre/width, else min-max), ``minmax``, a preset (``lung``,
``mediastinum``, ``soft_tissue``, ``bone``, ``brain``, ...) or ``C,W``; ``frames=middle``
(default; one row per file, its middle frame) or ``frames=all`` (one row per frame, id
``<file id>#<frame>``). Both options enter the store fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ConfigError, SourceError
from probe.sources._base import Source, cache_root
from probe.sources._dicom_pixels import DICOM_EXTENSIONS, DicomOptions, frame_count, is_dicom_path, read_dicom
from probe.sources._options import with_options
from probe.sources._stat_cache import cached_per_file
from probe.sources.files import _SPLIT_DIRS, FileListSource, open_manifest
from probe.sources.images import RgbaPolicy

#: Spec options of ``dicom:`` (and of ``csv:`` manifests listing DICOM files).
DICOM_OPTION_KEYS: tuple[str, ...] = ("window", "frames")


def read_header(path: str) -> tuple[str, int]:
    """(PatientID or "", number of frames) from a file's header; ("", 1) when it cannot be read.

    An unreadable file is reported when it is decoded (or skipped with ``--on-error skip``).
    """
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID", "NumberOfFrames"])
    except Exception:  # any failure here surfaces, with its reason, when the pixels are decoded
        return "", 1
    return str(ds.get("PatientID") or "").strip(), frame_count(ds)


def read_headers(paths: Sequence[str], *, cache_file: Path) -> list[tuple[str, int]]:
    """:func:`read_header` of many files, cached by file status (about 2 ms a file; see :func:`cached_per_file`)."""

    def header(path: str) -> list[Any]:
        return list(read_header(path)) if is_dicom_path(path) else ["", 1]

    return [(str(p), int(f)) for p, f in cached_per_file(paths, cache_file=cache_file, compute=header, missing=["", 1])]


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and (p.suffix.lower() in DICOM_EXTENSIONS or is_dicom_path(p))
    )


def _scan_folder(root: Path, options: DicomOptions, rgba: RgbaPolicy) -> FileListSource:
    top = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    split_level = bool(top) and all(d.name.lower() in _SPLIT_DIRS for d in top)
    paths: list[Path] = []
    labels: list[str] = []
    splits: list[str] = []
    for split_dir in top if split_level else [root]:
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
            found = _dicom_files(class_dir)
            paths += found
            labels += [class_dir.name] * len(found)
            splits += [split_dir.name if split_level else ""] * len(found)
    if not paths:
        raise SourceError(
            f"dicom:{root}: no DICOM files in class subfolders; expected dir/<class>/<file.dcm> or "
            "dir/<train|val|test>/<class>/<file.dcm>, or pass a CSV manifest (path,label[,split,group])"
        )
    return FileListSource(
        spec=f"dicom:{root}", root=root, paths=paths, labels=labels, splits=splits, rgba=rgba, dicom=options
    )


class DicomFrameRows(Source):
    """One row per frame of every file of a DICOM file source (``frames=all``).

    Rows of one file are consecutive and share its label, split and group; single-frame files keep
    their id, frame ``k`` of a multi-frame file gets ``<id>#<k>``.
    """

    def __init__(self, base: FileListSource, n_frames: Sequence[int]) -> None:
        counts = np.asarray(n_frames, dtype=np.int64)
        self.base = base
        self.rows = np.repeat(np.arange(len(base), dtype=np.int64), counts)
        self.frames = np.concatenate([np.arange(n, dtype=np.int64) for n in counts])
        self.spec, self.name, self.classes, self.task = base.spec, base.name, base.classes, base.task
        self.ids = [
            base.ids[r] if counts[r] == 1 else f"{base.ids[r]}#{k}" for r, k in zip(self.rows, self.frames, strict=True)
        ]
        self.labels = base.labels[self.rows]
        self.splits = base.splits[self.rows]
        self.groups = None if base.groups is None else [base.groups[r] for r in self.rows]

    def load_image(self, index: int) -> np.ndarray:
        r = int(self.rows[index])
        return read_dicom(self.base.paths[r], self.base.dicom, frame=int(self.frames[index]), sample_id=self.ids[index])

    def location(self, index: int) -> str:
        return f"{self.base.paths[int(self.rows[index])]} frame {int(self.frames[index])}"

    def decode_options(self) -> dict[str, Any]:
        return self.base.decode_options()

    def content_digest(self) -> str:
        return self.subset_digest(np.arange(len(self.ids)))

    def subset_digest(self, indices: np.ndarray) -> str:
        h = hashlib.sha256(self.base.subset_digest(np.unique(self.rows[indices])).encode())
        h.update("\0".join(self.ids[i] for i in indices).encode())
        return h.hexdigest()


def open_dicom(arg: str, *, options: dict[str, str] | None = None, rgba: RgbaPolicy = "composite") -> Source:
    """Open a DICOM folder or manifest (see the module docstring for layouts and options).

    Args:
        arg: a folder (class subfolders) or a CSV manifest.
        options: spec options ``window`` and ``frames``.
        rgba: alpha policy for non-DICOM rows of a manifest.

    Raises:
        SourceError: the path is neither a folder nor a file, or holds no DICOM files.
        ConfigError: an unknown window or frame policy.
    """
    opts = DicomOptions.from_options(options or {})
    path = Path(arg).expanduser().resolve()
    if path.is_dir():
        base = _scan_folder(path, opts, rgba)
    elif path.is_file():
        base = open_manifest(str(path), rgba=rgba, dicom=opts)
    else:
        raise SourceError(f"dicom:{arg}: no such folder or manifest; pass a folder of class subfolders or a CSV")
    key = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    headers = read_headers(base.paths, cache_file=cache_root() / "dicom_headers" / f"{key}.json")
    given = base.groups or [""] * len(base)
    base.groups = [g or patient or f"file:{i}" for g, (patient, _), i in zip(given, headers, base.ids, strict=True)]
    base.spec = with_options(f"dicom:{path}", opts.to_options())
    n_frames = [n for _, n in headers]
    if opts.frames == "all" and max(n_frames) > 1:
        return DicomFrameRows(base, n_frames)
    return base


def open_dicom_csv(manifest: str, *, options: dict[str, str], rgba: RgbaPolicy = "composite") -> FileListSource:
    """``csv:<manifest>?window=...``: a plain manifest whose DICOM rows decode with the given window.

    Groups come from the manifest only; for PatientID groups or per-frame rows use ``dicom:<manifest>``.

    Raises:
        ConfigError: ``frames=all`` (a ``dicom:`` manifest feature), or a bad window.
    """
    opts = DicomOptions.from_options(options)
    if opts.frames == "all":
        raise ConfigError(f"csv:{manifest}?frames=all: per-frame rows need dicom:{manifest}?frames=all instead of csv:")
    source = open_manifest(manifest, rgba=rgba, dicom=opts)
    source.spec = with_options(source.spec, opts.to_options())
    return source
