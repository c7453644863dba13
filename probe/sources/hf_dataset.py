"""``hf-dataset:``: a Hugging Face ``datasets`` dataset, saved with ``save_to_disk`` (or a hub name online).

``hf-dataset:/data/derm?image=img&label=dx`` reads every split of a ``DatasetDict`` saved to that
folder: split names map to probe's splits (``train``, ``validation``/``val``/``dev``, ``test``; any
other split name is an error naming the fix), the image column defaults to the first ``Image``
feature and the label column to the first ``ClassLabel`` feature (class names from it), else a column
named ``label`` whose values are sorted into classes. Ids are ``<split>/<row>``. The content digest
covers the saved Arrow files' bytes (cached by file status like folder sources), so an edited dataset
is a new store.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ConfigError, DataFileError, ImageDecodeError, SourceError
from probe.sources._base import Source, cache_root, split_code
from probe.sources.files import content_digests
from probe.sources.images import RgbaPolicy, pil_to_array

OPTION_KEYS: tuple[str, ...] = ("image", "label")


def _load(arg: str) -> Any:
    try:
        import datasets
    except ImportError:  # pragma: no cover - the dev extra installs it
        raise SourceError("hf-dataset: sources need the `datasets` package: pip install datasets") from None
    path = Path(os.path.expanduser(arg))
    if path.exists():
        try:
            return datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise DataFileError(f"hf-dataset:{arg} is not a dataset saved with save_to_disk ({exc})") from None
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("PROBE_OFFLINE") == "1":
        raise DataFileError(f"hf-dataset:{arg}: no such folder, and downloads are off; save the dataset to a folder")
    try:
        return datasets.load_dataset(arg)
    except Exception as exc:  # the hub raises many kinds; all mean "could not get it"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataFileError(
            f"hf-dataset:{arg} could not be loaded from the hub ({first}); without network access save it "
            "elsewhere with Dataset.save_to_disk and pass that folder"
        ) from None


def _column(features: Any, wanted: str | None, kind: str, fallback: str | None, where: str) -> str:
    import datasets

    if wanted:
        if wanted not in features:
            raise ConfigError(f"{where}: no column {wanted!r}; columns: {', '.join(features)}")
        return wanted
    cls = {"image": datasets.Image, "label": datasets.ClassLabel}[kind]
    found = [name for name, f in features.items() if isinstance(f, cls)]
    if found:
        return found[0]
    if fallback and fallback in features:
        return fallback
    raise ConfigError(
        f"{where}: no {kind} column found; name it with ?{kind}=<column> (columns: {', '.join(features)})"
    )


class HFDatasetSource(Source):
    """Images and class labels from a saved Hugging Face dataset (see the module docstring)."""

    def __init__(self, arg: str, *, options: dict[str, str] | None = None, rgba: RgbaPolicy = "composite") -> None:
        options = dict(options or {})
        loaded = _load(arg)
        parts = dict(loaded) if hasattr(loaded, "keys") else {"train": loaded}
        where = f"hf-dataset:{arg}"
        codes = {}
        for split_name in parts:
            try:
                codes[split_name] = split_code(split_name)
            except ConfigError:
                raise ConfigError(
                    f"{where}: split {split_name!r} is not train, validation or test; rename it "
                    "(DatasetDict(...).save_to_disk) or keep only those splits"
                ) from None
        first = next(iter(parts.values()))
        self.image_column = _column(first.features, options.get("image"), "image", "image", where)
        self.label_column = _column(first.features, options.get("label"), "label", "label", where)
        label_feature = first.features[self.label_column]
        names = getattr(label_feature, "names", None)
        raw = {s: list(d[self.label_column]) for s, d in parts.items()}
        classes = list(names) if names else sorted({str(v) for values in raw.values() for v in values})
        index = {c: i for i, c in enumerate(classes)}
        self.parts = parts
        self.rows: list[tuple[str, int]] = [(s, i) for s, d in parts.items() for i in range(len(d))]
        self.ids = [f"{s}/{i}" for s, i in self.rows]
        labels = [v if names else index[str(v)] for s in parts for v in raw[s]]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.splits = np.asarray([codes[s] for s, _ in self.rows], dtype=np.int8)
        self.classes = tuple(str(c) for c in classes)
        self.task = "binary" if len(classes) == 2 else "multiclass"
        self.groups = None
        self.rgba = rgba
        self.root = Path(os.path.expanduser(arg))
        suffix = "?" + "&".join(f"{k}={v}" for k, v in sorted(options.items())) if options else ""
        self.spec = f"hf-dataset:{os.path.realpath(self.root) if self.root.exists() else arg}{suffix}"
        self.name = self.root.name if self.root.exists() else arg.replace("/", "_")

    def load_image(self, index: int) -> np.ndarray:
        split, row = self.rows[index]
        try:
            image = self.parts[split][row][self.image_column]
        except Exception as exc:
            raise ImageDecodeError(f"{self.ids[index]}: cannot decode image ({exc})") from None
        return pil_to_array(image, rgba=self.rgba, where=self.ids[index])

    def decode_options(self) -> dict[str, Any]:
        return {"rgba": self.rgba, "image": self.image_column, "label": self.label_column}

    def content_digest(self) -> str:
        h = hashlib.sha256()
        if self.root.is_dir():
            files = sorted(str(p) for p in self.root.rglob("*.arrow"))
            key = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
            for path, digest in zip(
                files, content_digests(files, cache_file=cache_root() / "digests" / f"hf-{key}.json"), strict=True
            ):
                h.update(f"{Path(path).relative_to(self.root)}\0{digest}\0".encode())
        else:  # a hub dataset: the library's own content fingerprints
            for split, part in self.parts.items():
                h.update(f"{split}\0{getattr(part, '_fingerprint', '')}\0".encode())
        return h.hexdigest()
