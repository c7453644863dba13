"""Multi-modal samples (``csv:`` manifests with ``modality:<name>`` columns), some modalities missing.

A manifest lists one sample per row: a label column, optional split, group and id columns (as for
``csv:``), and one ``modality:<name>`` column per modality holding that modality's image path;
an empty cell means the sample lacks that modality. For example::

    id,label,split,patient,modality:t1,modality:t1c,modality:t2,modality:flair
    s001,glioma,train,p01,s001_t1.png,s001_t1c.png,,s001_flair.png

Each modality is a view of the sample (:attr:`Source.views`); the presence mask says which cells
were filled. Relative paths resolve against the manifest's folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import SourceError
from probe.sources._base import Source, cache_root, split_code
from probe.sources.files import (
    GROUP_COLUMNS,
    ID_COLUMNS,
    LABEL_COLUMNS,
    PATH_COLUMNS,
    SPLIT_COLUMNS,
    _pick,
    _sorted_classes,
    content_digests,
    read_manifest,
)
from probe.sources.images import RgbaPolicy, pixel_budget_options, read_image

MODALITY_PREFIX = "modality:"


def modality_columns(header: Sequence[str]) -> list[str]:
    """The header cells that name a modality (``modality:<name>``, any case)."""
    return [h for h in header if h.strip().lower().startswith(MODALITY_PREFIX)]


def _modality_names(columns: Sequence[str], header: Sequence[str], file: Path) -> list[str]:
    names = [c.strip()[len(MODALITY_PREFIX) :].strip() for c in columns]
    if any(not n for n in names):
        raise SourceError(
            f"csv:{file}: a column is named {MODALITY_PREFIX!r} without a modality name; write e.g. modality:t1"
        )
    lower = [n.lower() for n in names]
    dup = next((n for n in names if lower.count(n.lower()) > 1), None)
    if dup is not None:
        raise SourceError(
            f"csv:{file}: modality {dup!r} has two columns; give each modality one modality:<name> column"
        )
    path_col = _pick(header, PATH_COLUMNS, "image path", file, required=False)
    if path_col is not None:
        raise SourceError(
            f"csv:{file}: has both a {path_col!r} column and modality columns; put every image path in a "
            f"modality:<name> column (or drop the modality columns for one image per sample)"
        )
    return names


class MultiModalSource(Source):
    """Samples made of several modality images (views), some possibly missing.

    Args:
        spec: canonical specification, e.g. ``"csv:/data/brats/manifest.csv"``.
        root: folder the manifest lives in (digest cache key).
        modalities: modality names, one per view.
        paths: per sample, one path (or None when missing) per modality.
        labels: class name per sample.
        splits: split name per sample.
        groups: group (patient) id per sample, or None.
        ids: sample ids.
        rgba: alpha-channel policy passed to the decoder.
    """

    view_kind = "modalities"

    def __init__(
        self,
        *,
        spec: str,
        root: Path,
        modalities: Sequence[str],
        paths: Sequence[Sequence[str | None]],
        labels: Sequence[str],
        splits: Sequence[str],
        groups: Sequence[str] | None,
        ids: Sequence[str],
        rgba: RgbaPolicy = "composite",
    ) -> None:
        self.spec, self.root, self.rgba = spec, root, rgba
        self.name = root.name or "data"
        self.views = tuple(modalities)
        self.paths = [list(p) for p in paths]
        self.classes = _sorted_classes(labels)
        if len(self.classes) < 2:
            raise SourceError(f"{spec}: found a single class {self.classes!r}; a classification set needs at least 2")
        self.task = "binary" if len(self.classes) == 2 else "multiclass"
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = np.array([index[c] for c in labels], dtype=np.int64)
        self.splits = np.array([split_code(s) for s in splits], dtype=np.int8)
        self.groups = None if groups is None else [str(g) for g in groups]
        self.ids = list(ids)
        if len(set(self.ids)) != len(self.ids):
            dup = next(i for i in self.ids if self.ids.count(i) > 1)
            raise SourceError(f"{spec}: sample id {dup!r} appears twice; ids must be unique")

    def view_mask(self) -> np.ndarray:
        return np.array([[p is not None for p in row] for row in self.paths], dtype=bool).reshape(len(self), -1)

    def load_view(self, index: int, view: int) -> np.ndarray:
        path = self.paths[index][view]
        assert path is not None, "absent views are never decoded"
        assert self.views is not None
        return read_image(path, rgba=self.rgba, sample_id=f"{self.ids[index]}/{self.views[view]}")

    def load_image(self, index: int) -> np.ndarray:
        raise SourceError(
            f"{self.spec} has several modalities per sample ({', '.join(self.views or ())}); embed them with "
            "probe extract, or read one with load_view(index, view)"
        )

    def location(self, index: int) -> str:
        return ", ".join(p for p in self.paths[index] if p is not None)

    def decode_options(self) -> dict[str, Any]:
        return {"rgba": self.rgba, **pixel_budget_options()}

    def content_digest(self) -> str:
        return self.subset_digest(np.arange(len(self)))

    def subset_digest(self, indices: np.ndarray) -> str:
        assert self.views is not None
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        cells = [(i, v, self.paths[i][v]) for i in indices for v in range(len(self.views))]
        files = [p for _, _, p in cells if p is not None]
        digests = iter(content_digests(files, cache_file=cache_root() / "digests" / f"{key}.json"))
        h = hashlib.sha256()
        for i, v, p in cells:
            h.update(f"{self.ids[i]}\0{self.views[v]}\0{next(digests) if p is not None else 'absent'}\0".encode())
        return h.hexdigest()


def open_multimodal_manifest(manifest: str, *, rgba: RgbaPolicy = "composite") -> MultiModalSource:
    """Read a CSV manifest with ``modality:<name>`` path columns (see the module docstring).

    Raises:
        SourceError: missing file, a bad or duplicated modality column, a path column beside modality
            columns, no label column, an empty label, or a row without any modality.
    """
    file, rows, header = read_manifest(manifest)
    columns = modality_columns(header)
    names = _modality_names(columns, header, file)
    label_col = _pick(header, LABEL_COLUMNS, "label", file, required=True)
    split_col = _pick(header, SPLIT_COLUMNS, "split", file, required=False)
    group_col = _pick(header, GROUP_COLUMNS, "group", file, required=False)
    id_col = _pick(header, ID_COLUMNS, "id", file, required=False)
    assert label_col is not None
    paths: list[list[str | None]] = []
    labels, splits, groups, ids = [], [], [], []
    for line, row in enumerate(rows, start=2):
        cells = [(row.get(c) or "").strip() for c in columns]
        label = (row.get(label_col) or "").strip()
        if not label or not any(cells):
            what = f"an empty {label_col!r}" if not label else "no modality path"
            raise SourceError(f"csv:{manifest}: line {line} has {what}; every sample needs a label and one image")
        paths.append([str(_resolve(c, file)) if c else None for c in cells])
        labels.append(label)
        splits.append((row.get(split_col) or "").strip() if split_col else "")
        groups.append((row.get(group_col) or "").strip() if group_col else "")
        ids.append((row.get(id_col) or "").strip() if id_col else f"row{line - 1:06d}")
    return MultiModalSource(
        spec=f"csv:{file}",
        root=file.parent,
        modalities=names,
        paths=paths,
        labels=labels,
        splits=splits,
        groups=groups if group_col else None,
        ids=ids,
        rgba=rgba,
    )


def _resolve(cell: str, file: Path) -> Path:
    p = Path(cell).expanduser()
    return p if p.is_absolute() else file.parent / p
