"""Image-file sources: ``folder:<dir>`` (ImageFolder layout) and ``csv:<manifest>``.

Both become a :class:`FileListSource`: a list of image paths with string labels, splits and groups.
The content digest is a blake2b of every file's bytes (plus its id), so copying a dataset keeps its
fingerprint and any edited pixel changes it. Digests are cached by (path, size, mtime), so only the
first run reads every byte; later runs only stat the files.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.errors import SourceError
from probe.sources._base import Source, cache_root, split_code
from probe.sources._stat_cache import cached_per_file
from probe.sources.images import IMAGE_EXTENSIONS, RgbaPolicy, pixel_budget_options, read_image

if TYPE_CHECKING:
    from probe.sources._dicom_pixels import DicomOptions

_SPLIT_DIRS = {"train", "training", "val", "valid", "validation", "dev", "test"}
PATH_COLUMNS = ("path", "image", "file", "filename", "image_path")
LABEL_COLUMNS = ("label", "class", "target", "diagnosis")
SPLIT_COLUMNS = ("split", "set", "subset", "fold")
GROUP_COLUMNS = ("group", "patient", "patient_id", "subject", "subject_id")
ID_COLUMNS = ("id", "sample_id", "image_id")


def _sorted_classes(names: Sequence[str]) -> tuple[str, ...]:
    unique = set(names)
    try:
        return tuple(sorted(unique, key=lambda s: (float(s), s)))
    except ValueError:
        return tuple(sorted(unique))


def _blake2b_file(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    except OSError:
        return "unreadable"  # reported when decoded (or skipped with --on-error skip)
    return h.hexdigest()


def content_digests(paths: Sequence[str], *, cache_file: Path) -> list[str]:
    """blake2b of every file's bytes, cached by file status (see :func:`cached_per_file`).

    A missing file digests as ``"missing"`` and an unreadable one as ``"unreadable"`` (never cached);
    both are reported when decoded, or skipped.
    """
    out = cached_per_file(
        paths, cache_file=cache_file, compute=_blake2b_file, missing="missing", cacheable=lambda d: d != "unreadable"
    )
    return [str(d) for d in out]


def read_manifest(manifest: str) -> tuple[Path, list[dict[str, str]], list[str]]:
    """The resolved file, rows and header of a CSV manifest (UTF-8, a BOM allowed).

    Raises:
        SourceError: missing file, text that is not UTF-8, or no rows.
    """
    file = Path(manifest).expanduser().resolve()
    if not file.is_file():
        raise SourceError(f"csv:{manifest}: file not found; pass the path of a CSV manifest")
    try:
        with open(file, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"csv:{manifest}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    if not rows:
        raise SourceError(f"csv:{manifest}: the manifest has no rows")
    return file, rows, list(rows[0].keys())


def manifest_header(manifest: str | Path) -> list[str]:
    """The header row of a CSV manifest ([] when it is missing, empty or unreadable: the reader reports it)."""
    try:
        with open(Path(manifest).expanduser(), newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return []


class FileListSource(Source):
    """Images on disk with string labels, optional splits and groups, in the given order.

    Args:
        spec: canonical specification, e.g. ``"folder:/data/isic"``.
        root: folder that ids are relative to.
        paths: absolute image paths, one per sample.
        labels: class name per sample.
        splits: split name per sample ("train", "val", "test" or "" for unsplit).
        groups: group (patient) id per sample, or ``None``.
        ids: sample ids (defaults to paths relative to ``root``).
        rgba: alpha-channel policy passed to the decoder.
        dicom: window and frame policy for DICOM files (None: the defaults).
    """

    def __init__(
        self,
        *,
        spec: str,
        root: Path,
        paths: Sequence[Path],
        labels: Sequence[str],
        splits: Sequence[str],
        groups: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        rgba: RgbaPolicy = "composite",
        dicom: DicomOptions | None = None,
    ) -> None:
        if not paths:
            raise SourceError(f"{spec}: no images found; check the path and the layout")
        self.spec = spec
        self.name = root.name or "data"
        self.root = root
        self.paths = [str(p) for p in paths]
        self.rgba: RgbaPolicy = rgba
        self.dicom = dicom
        self.fast_side: int | None = None  # set by use_fast_decode: large JPEGs decoded at reduced size
        self.classes = _sorted_classes(labels)
        if len(self.classes) < 2:
            raise SourceError(f"{spec}: found a single class {self.classes!r}; a classification set needs at least 2")
        self.task = "binary" if len(self.classes) == 2 else "multiclass"
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = np.array([index[c] for c in labels], dtype=np.int64)
        self.splits = np.array([split_code(s) for s in splits], dtype=np.int8)
        self.groups = None if groups is None else [str(g) for g in groups]
        self.ids = list(ids) if ids is not None else [Path(p).relative_to(root).as_posix() for p in paths]
        if len(set(self.ids)) != len(self.ids):
            dup = next(i for i in self.ids if self.ids.count(i) > 1)
            raise SourceError(f"{spec}: sample id {dup!r} appears twice; ids must be unique")

    def load_image(self, index: int) -> np.ndarray:
        return read_image(
            self.paths[index], rgba=self.rgba, sample_id=self.ids[index], dicom=self.dicom, fast_side=self.fast_side
        )

    def use_fast_decode(self, side: int) -> bool:
        if self.dicom is not None:
            return False
        self.fast_side = int(side)
        return True

    def location(self, index: int) -> str:
        return self.paths[index]

    def decode_options(self) -> dict[str, Any]:
        if self.dicom is not None:  # DICOM pixels are read by pydicom: the image pixel budget does not apply
            return {"rgba": self.rgba, "dicom": self.dicom.__dict__}
        fast = {} if self.fast_side is None else {"decode": "fast", "fast_side": self.fast_side}
        return {"rgba": self.rgba, **pixel_budget_options(), **fast}  # non-defaults only: fingerprints stay

    def content_digest(self) -> str:
        return self.subset_digest(np.arange(len(self.paths)))

    def subset_digest(self, indices: np.ndarray) -> str:
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        paths = [self.paths[i] for i in indices]
        digests = content_digests(paths, cache_file=cache_root() / "digests" / f"{key}.json")
        h = hashlib.sha256()
        for i, digest in zip(indices, digests, strict=True):
            h.update(f"{self.ids[i]}\0{digest}\0".encode())
        return h.hexdigest()


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def open_folder(directory: str, *, rgba: RgbaPolicy = "composite") -> FileListSource:
    """ImageFolder layout: ``dir/<class>/*.png`` or ``dir/<train|val|test>/<class>/*.png``.

    Raises:
        SourceError: the folder does not exist, or holds no class subfolders with images.
    """
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise SourceError(f"folder:{directory}: not a folder; pass an ImageFolder root (one subfolder per class)")
    top = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    split_level = bool(top) and all(d.name.lower() in _SPLIT_DIRS for d in top)
    paths: list[Path] = []
    labels: list[str] = []
    splits: list[str] = []
    for split_dir in top if split_level else [root]:
        split = split_dir.name if split_level else ""
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith(".")):
            for p in sorted(q for q in class_dir.rglob("*") if _is_image(q)):
                paths.append(p)
                labels.append(class_dir.name)
                splits.append(split)
    if not paths:
        raise SourceError(
            f"folder:{directory}: no images in class subfolders; expected dir/<class>/<image> "
            f"or dir/<train|val|test>/<class>/<image> with extensions {', '.join(IMAGE_EXTENSIONS)}"
        )
    return FileListSource(spec=f"folder:{root}", root=root, paths=paths, labels=labels, splits=splits, rgba=rgba)


def _pick(header: Sequence[str], names: Sequence[str], what: str, file: Path, *, required: bool) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    for n in names:
        if n in lower:
            return lower[n]
    if required:
        raise SourceError(f"csv:{file}: no {what} column; name one of {', '.join(names)} (found: {', '.join(header)})")
    return None


def open_manifest(
    manifest: str, *, rgba: RgbaPolicy = "composite", dicom: DicomOptions | None = None
) -> FileListSource:
    """CSV manifest with a path and a label column, and optional split, group and id columns.

    Relative paths resolve against the manifest's folder.

    Raises:
        SourceError: the file is missing, a required column is absent, or a row is incomplete.
    """
    file, rows, header = read_manifest(manifest)
    path_col = _pick(header, PATH_COLUMNS, "image path", file, required=True)
    label_col = _pick(header, LABEL_COLUMNS, "label", file, required=True)
    split_col = _pick(header, SPLIT_COLUMNS, "split", file, required=False)
    group_col = _pick(header, GROUP_COLUMNS, "group", file, required=False)
    id_col = _pick(header, ID_COLUMNS, "id", file, required=False)
    assert path_col is not None and label_col is not None
    paths, labels, splits, groups, ids = [], [], [], [], []
    for line, row in enumerate(rows, start=2):
        raw_path, label = (row.get(path_col) or "").strip(), (row.get(label_col) or "").strip()
        if not raw_path or not label:
            raise SourceError(f"csv:{manifest}: line {line} has an empty {path_col!r} or {label_col!r} value")
        p = Path(raw_path).expanduser()
        paths.append(p if p.is_absolute() else file.parent / p)
        labels.append(label)
        splits.append((row.get(split_col) or "").strip() if split_col else "")
        groups.append((row.get(group_col) or "").strip() if group_col else "")
        ids.append((row.get(id_col) or "").strip() if id_col else raw_path)
    return FileListSource(
        spec=f"csv:{file}",
        root=file.parent,
        paths=paths,
        labels=labels,
        splits=splits,
        groups=groups if group_col else None,
        ids=ids,
        rgba=rgba,
        dicom=dicom,
    )
