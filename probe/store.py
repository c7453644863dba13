"""The embedding store: one Zarr v3 group per (dataset, backbone, preprocessing) fingerprint.

Layout of a store group::

    features/<pooling>   (n, dim) float32 or float16, chunks of (chunk_rows, dim), uncompressed or lz4;
                         (n, n_views, dim) for multi-view sources (slices of volumes, modalities)
    present              (n, n_views) bool, multi-view stores only: which views were embedded
    labels               (n,) int64, or (n, n_labels) for multi-label: 1, 0, or -1 where the source's
                         label policy (attrs["source"]["label_policy"]) ignores an uncertain entry
    split                (n,) int8 codes into attrs["splits"]
    ids                  (n,) str
    groups               (n,) str ("" when unknown), present when the source has groups
    valid                (n,) bool, False for samples skipped with --on-error skip
    done                 (n_chunks,) bool progress mask, one element per chunk file

A chunk's ``done`` flag is set only after all its feature rows are written, so an interrupted run
resumes at the first unwritten chunk. This module imports no torch.

Checksums: every chunk of a store made with layout 2 (``attrs["layout"]``) ends with zarr v3's
CRC32C codec, verified whenever it is read, so a flipped bit is an error instead of a silently
different number. Checksums do not change the numbers, so they are not fingerprinted: stores made
before them (no ``layout`` attribute) keep opening and being found. Any read failure (checksum
mismatch, truncated or corrupt chunk, missing array metadata) is a one-line :class:`StoreError`
naming the array and chunk; :func:`verify_store` checks every chunk.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from probe.errors import StoreError, StoreLockedError
from probe.store_check import ROW_ARRAYS, StoreCheck, check_group, open_array, read_array
from probe.store_url import check_url, is_url, open_group, url_prefix_is_empty, url_store_metas

FORMAT = "probe.embeddings/1"
#: Chunk layout of new stores: 2 adds a CRC32C checksum to every chunk (1, implicit: none).
LAYOUT = 2
MASK_IGNORE = 255  # label-map value of pixels that are never trained on or scored (padding)
DEFAULT_ROOT = "embeddings"
STORE_DTYPES: tuple[str, ...] = ("float32", "float16")
COMPRESSIONS: tuple[str, ...] = ("none", "lz4")


def slug(text: str) -> str:
    """A file-name-safe version of a dataset or backbone name."""
    out = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return out.strip("-.") or "x"


def store_path(root: str | os.PathLike[str], *, dataset: str, backbone: str, fingerprint: str) -> str:
    """Where the store of a fingerprint lives: ``<root>/<dataset>/<backbone>-<fingerprint[:16]>.zarr``."""
    return os.path.join(str(root), slug(dataset), f"{slug(backbone)}-{fingerprint[:16]}.zarr")


def check_writable(root: str | os.PathLike[str]) -> None:
    """Create ``root`` if needed and prove a file can be written there.

    Raises:
        StoreError: the folder cannot be created or written.
    """
    if is_url(str(root)):
        check_url(str(root))
        return
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        probe_file = Path(root) / f".probe-write-test-{os.getpid()}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise StoreError(
            f"store root {root} is not writable ({exc.strerror or exc}); pass ExtractConfig(store_root=DIR) with a "
            "writable folder"
        ) from None


@contextlib.contextmanager
def store_lock(path: str, *, wait: float = 0.0, name: str = "") -> Iterator[None]:
    """Hold an exclusive lock on a local store for the duration of a write (no-op for URLs).

    The lock is an ``flock`` on ``<store>.lock`` (``<store>.<name>.lock`` for a named lock, such as
    one shard's); the kernel drops it when the process dies, so a killed run never leaves a stale
    lock behind.

    Args:
        path: the store.
        wait: seconds to wait for another holder to let go (0: fail at once).
        name: a lock beside the store's own (e.g. ``"shard-1-of-4"``).

    Raises:
        StoreLockedError: another process holds the lock (after ``wait`` seconds).
    """
    if is_url(path):
        yield
        return
    import fcntl

    lock_file = Path(f"{path}.{name}.lock" if name else f"{path}.lock")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    with open(lock_file, "a+") as fh:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                what = f"store {path}" + (f" ({name.replace('-', ' ')})" if name else "")
                raise StoreLockedError(
                    f"{what} is being written by {holder}; wait for it to finish (or stop it) and run the command again"
                ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class StoreLayout:
    """Shapes and encodings of a new store."""

    n_rows: int  # samples
    poolings: Mapping[str, int]  # pooling name -> feature width
    chunk_rows: int  # rows per chunk (the resume granularity)
    dtype: str = "float32"  # feature dtype: float32 or float16
    compression: str = "none"  # "none" or "lz4" (blosc)
    views: tuple[str, ...] | None = None  # view names of multi-view sources (features get a views axis)
    grids: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # dense pooling -> (h, w) patch grid
    mask_size: int | None = None  # segmentation stores: side of the stored (S, S) label maps

    @property
    def n_chunks(self) -> int:
        return -(-self.n_rows // self.chunk_rows)

    def feature_shape(self, pooling: str) -> tuple[int, ...]:
        """Shape of one row's (one view's) features: ``(dim,)``, or ``(h, w, dim)`` for a dense pooling."""
        return (*self.grids.get(pooling, ()), int(self.poolings[pooling]))


def _array(group: zarr.Group, name: str) -> zarr.Array:
    return cast(zarr.Array, group[name])


def _compressors(compression: str) -> list[Any]:
    """Bytes-to-bytes codecs of a new array: the compression, then a CRC32C checksum of the stored bytes."""
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

    first: list[Any] = []
    if compression == "lz4":
        first = [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
    elif compression == "zstd":  # zarr's default for the row arrays (labels, ids, ...)
        first = [ZstdCodec(level=0)]
    return [*first, Crc32cCodec()]


def _write_row_arrays(
    g: zarr.Group,
    *,
    labels: np.ndarray,
    splits: np.ndarray,
    ids: list[str],
    groups: list[str] | None,
    names: tuple[str, ...] = ROW_ARRAYS,
) -> None:
    """(Re)create the row arrays ``names`` from the source's values."""
    n = len(ids)
    zstd = _compressors("zstd")
    if "labels" in names:
        g.create_array("labels", data=np.asarray(labels, dtype=np.int64), compressors=zstd, overwrite=True)
    if "split" in names:
        g.create_array("split", data=np.asarray(splits, dtype=np.int8), compressors=zstd, overwrite=True)
    for name, values in (("ids", ids), ("groups", groups)):
        if values is not None and name in names:  # variable-length UTF-8 (fixed-width unicode has no v3 spec)
            arr = g.create_array(name, shape=(n,), chunks=(max(n, 1),), dtype=str, compressors=zstd, overwrite=True)
            arr[:] = np.asarray(values, dtype=str)


_NOT_A_GROUP = (
    FileNotFoundError,
    ValueError,  # includes a truncated zarr.json (JSONDecodeError)
    zarr.errors.GroupNotFoundError,
    zarr.errors.NodeTypeValidationError,
    zarr.errors.ContainsArrayError,
)


def existing_store_attrs(path: str) -> dict[str, Any] | None:
    """Attributes of the probe store at ``path``, or ``None`` when nothing (or an empty folder) is there.

    Raises:
        StoreError: something that is not a probe store occupies ``path`` (it is never replaced).
    """
    if not is_url(path):
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise StoreError(f"{path} is a file, not an embedding store; choose another ExtractConfig(store=PATH)")
        if not p.exists() or not any(p.iterdir()):
            return None
    try:
        group = open_group(path, mode="r")
    except _NOT_A_GROUP:
        if is_url(path) and url_prefix_is_empty(path):
            return None
        raise StoreError(
            f"{path} exists and is not a probe store; it is left untouched: choose another --store"
        ) from None
    attrs: dict[str, Any] = dict(group.attrs)
    if attrs.get("format") != FORMAT:
        raise StoreError(
            f"{path} is a Zarr group but not a probe store; it is left untouched: choose another "
            "ExtractConfig(store=PATH)"
        )
    return attrs


def _create_chunk_arrays(g: zarr.Group, layout: StoreLayout, only: set[str] | None = None) -> None:
    """(Re)create the arrays written chunk by chunk (features, ``valid``, ``present``, ``done``), empty.

    Args:
        g: the store group.
        layout: shapes and encodings.
        only: array names to create (None: all of them).
    """
    n, rows = layout.n_rows, layout.chunk_rows
    inner = () if layout.views is None else (len(layout.views),)
    want = (lambda name: True) if only is None else only.__contains__
    for name in layout.poolings:
        if want(f"features/{name}"):
            shape = layout.feature_shape(name)
            g.create_array(
                f"features/{name}",
                shape=(n, *inner, *shape),
                chunks=(rows, *inner, *shape),
                dtype=layout.dtype,
                compressors=_compressors(layout.compression),
                fill_value=np.nan,
                overwrite=True,
            )
    flags = _compressors("zstd")
    if want("valid"):
        g.create_array(
            "valid", shape=(n,), chunks=(rows,), dtype=bool, fill_value=False, compressors=flags, overwrite=True
        )
    if layout.views is not None and want("present"):
        g.create_array(
            "present", shape=(n, *inner), chunks=(rows, *inner), dtype=bool, fill_value=False, compressors=flags,
            overwrite=True,
        )  # fmt: skip
    if layout.mask_size is not None and want("masks"):
        side = layout.mask_size
        g.create_array(
            "masks", shape=(n, side, side), chunks=(rows, side, side), dtype="uint8", fill_value=MASK_IGNORE,
            compressors=flags, overwrite=True,
        )  # fmt: skip
    if want("done"):
        g.create_array(
            "done", shape=(layout.n_chunks,), chunks=(1,), dtype=bool, fill_value=False,
            compressors=_compressors("none"), overwrite=True,
        )  # fmt: skip


class StoreWriter:
    """Creates a store, tells which chunks are missing, and writes chunks (use under :func:`store_lock`)."""

    def __init__(self, path: str, group: zarr.Group) -> None:
        self.path = path
        self.group = group
        attrs: dict[str, Any] = dict(group.attrs)
        self.chunk_rows = int(attrs["chunk_rows"])
        self.n_rows = int(attrs["n_rows"])
        self.n_chunks = -(-self.n_rows // self.chunk_rows)
        self.dtype = np.dtype(attrs["dtype"])
        self.poolings: dict[str, int] = dict(attrs["poolings"])
        self.views: tuple[str, ...] | None = tuple(attrs["views"]) if attrs.get("views") else None
        self.grids: dict[str, tuple[int, int]] = {p: (int(g[0]), int(g[1])) for p, g in attrs.get("grids", {}).items()}
        self.mask_size: int | None = attrs.get("mask_size")

    @property
    def attrs(self) -> dict[str, Any]:
        """A copy of the store's attributes."""
        return dict(self.group.attrs)

    def valid_rows(self) -> int:
        """Rows not masked as skipped."""
        return int(np.count_nonzero(read_array(self.group, self.path, "valid")))

    def layout(self) -> StoreLayout:
        """The shapes and encodings the store was created with."""
        a = self.attrs
        return StoreLayout(
            n_rows=self.n_rows,
            poolings=self.poolings,
            chunk_rows=self.chunk_rows,
            dtype=str(a["dtype"]),
            compression=str(a.get("compression", "none")),
            views=self.views,
            grids=self.grids,
            mask_size=self.mask_size,
        )

    def mark_damaged(self, check: StoreCheck) -> list[int]:
        """Make the chunks a check found damaged pending again (recreating arrays whose metadata is lost).

        Row arrays (labels, split, ids, groups) are not handled here: rewrite them from the source
        with :meth:`rewrite_rows`. The store is marked incomplete until the chunks are written again.

        Returns:
            The row chunks now pending, ascending.
        """
        lost = {d.array for d in check.damaged if not d.chunk and d.array not in ROW_ARRAYS}
        chunks = {d.chunk[0] for d in check.damaged if d.chunk and d.array not in ROW_ARRAYS}
        if lost:
            _create_chunk_arrays(self.group, self.layout(), only=lost)
            if lost & {"done", "valid", "present"} or any(a.startswith("features/") for a in lost):
                chunks = set(range(self.n_chunks))
        if not chunks:
            return []
        self.group.update_attributes({"state": "extracting", "complete": False})
        done = open_array(self.group, self.path, "done")
        for c in sorted(chunks):
            done[c] = False  # a whole one-element chunk: written without reading the damaged one
        return sorted(chunks)

    def rewrite_rows(
        self,
        names: tuple[str, ...],
        *,
        labels: np.ndarray,
        splits: np.ndarray,
        ids: list[str],
        groups: list[str] | None,
    ) -> None:
        """Rewrite the row arrays ``names`` from the source (its fingerprint equals the store's)."""
        _write_row_arrays(self.group, labels=labels, splits=splits, ids=ids, groups=groups, names=names)

    @classmethod
    def create(
        cls,
        path: str,
        *,
        layout: StoreLayout,
        labels: np.ndarray,
        splits: np.ndarray,
        ids: list[str],
        groups: list[str] | None,
        attrs: Mapping[str, Any],
    ) -> StoreWriter:
        """Make a new, empty store, replacing an older probe store at ``path`` (never anything else)."""
        existing_store_attrs(path)  # raises unless path is free, an empty folder, or a probe store
        if not is_url(path) and os.path.exists(path):
            # rename first: an interrupted delete never leaves a half-store that blocks the next run
            trash = f"{path}.deleting-{os.getpid()}"
            os.replace(path, trash)
            shutil.rmtree(trash)
        # one metadata write: a group that exists always says it is a probe store being created
        g = open_group(path, mode="w", attributes={"format": FORMAT, "state": "creating"})
        n = layout.n_rows
        _write_row_arrays(g, labels=labels, splits=splits, ids=ids, groups=groups)
        _create_chunk_arrays(g, layout)
        g.update_attributes(  # one metadata write (attrs.update writes once per key)
            {
                **dict(attrs),
                "format": FORMAT,
                "n_rows": n,
                "chunk_rows": layout.chunk_rows,
                "poolings": dict(layout.poolings),
                "dtype": layout.dtype,
                "compression": layout.compression,
                "layout": LAYOUT,
                "checksums": "crc32c",
                **({"views": list(layout.views)} if layout.views is not None else {}),
                **({"grids": {p: list(g) for p, g in layout.grids.items()}} if layout.grids else {}),
                **({"mask_size": layout.mask_size} if layout.mask_size is not None else {}),
                "state": "extracting",
                "complete": False,
            }
        )
        return cls(path, g)

    @classmethod
    def open(cls, path: str) -> StoreWriter:
        """Reopen an existing store to resume it."""
        return cls(path, open_group(path, mode="r+"))

    def pending_chunks(self) -> list[int]:
        """Indices of chunks whose rows are not all written yet, ascending."""
        done = np.asarray(read_array(self.group, self.path, "done"), dtype=bool)
        return np.flatnonzero(~done).tolist()

    def chunk_bounds(self, chunk: int) -> tuple[int, int]:
        """First and one-past-last row of a chunk."""
        start = chunk * self.chunk_rows
        return start, min(start + self.chunk_rows, self.n_rows)

    def write_chunk(
        self,
        chunk: int,
        features: Mapping[str, np.ndarray],
        valid: np.ndarray,
        present: np.ndarray | None = None,
        masks: np.ndarray | None = None,
    ) -> None:
        """Write one whole chunk of every pooling, then mark it done.

        Args:
            chunk: chunk index.
            features: pooling -> (rows_in_chunk, dim) array, (rows_in_chunk, n_views, dim), or
                (rows_in_chunk, h, w, dim) for a dense pooling.
            valid: (rows_in_chunk,) bool, False for skipped samples.
            present: (rows_in_chunk, n_views) bool, the views embedded (multi-view stores only).
            masks: (rows_in_chunk, S, S) uint8 label maps (segmentation stores only).
        """
        start, stop = self.chunk_bounds(chunk)
        for name in self.poolings:
            _array(self.group, f"features/{name}")[start:stop] = features[name]
        _array(self.group, "valid")[start:stop] = valid
        if self.views is not None:
            assert present is not None, "a multi-view store needs the presence of every view"
            _array(self.group, "present")[start:stop] = present
        if self.mask_size is not None:
            assert masks is not None, "a segmentation store needs the label maps of every chunk"
            _array(self.group, "masks")[start:stop] = masks
        _array(self.group, "done")[chunk] = True

    def finish(self, extra_attrs: Mapping[str, Any]) -> None:
        """Mark the store complete (all chunks done) and record run details."""
        if self.pending_chunks():
            raise StoreError(f"store {self.path} still has unwritten chunks; run the same command again to resume")
        self.group.update_attributes({**dict(extra_attrs), "state": "complete", "complete": True})


@dataclass(frozen=True)
class StoreSummary:
    """One line of ``probe store ls``."""

    path: str
    dataset: str
    backbone: str
    rows: int
    poolings: dict[str, int]
    complete: bool
    fingerprint: str
    image_size: int | None = None  # model input side the features were made at
    resolution: str = ""  # "resize" or "pad"
    weights: str = ""  # "sha256:<hex>" of the weights, or "random:<seed>"


class EmbeddingStore:
    """Read access to a store: numpy arrays and provenance (no torch import)."""

    def __init__(self, path: str, group: zarr.Group) -> None:
        self.path = path
        self.group = group
        self.attrs: dict[str, Any] = dict(group.attrs)

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete", False))

    @property
    def n_rows(self) -> int:
        return int(self.attrs["n_rows"])

    @property
    def poolings(self) -> dict[str, int]:
        return dict(self.attrs["poolings"])

    @property
    def fingerprint(self) -> str:
        return str(self.attrs["fingerprint"])

    @property
    def classes(self) -> list[str]:
        return list(self.attrs["source"]["classes"])

    @property
    def views(self) -> tuple[str, ...] | None:
        """View names of a multi-view store (slices, modalities), else None."""
        return tuple(self.attrs["views"]) if self.attrs.get("views") else None

    @property
    def grids(self) -> dict[str, tuple[int, int]]:
        """Dense poolings and their (h, w) patch grids (features of shape (n, h, w, dim))."""
        return {p: (int(g[0]), int(g[1])) for p, g in self.attrs.get("grids", {}).items()}

    @property
    def masks(self) -> np.ndarray:
        """(n, S, S) uint8 label maps of a segmentation store (255 = ignore)."""
        if self.attrs.get("mask_size") is None:
            raise StoreError(f"store {self.path} holds no label maps; it was not extracted from a seg: source")
        return self.array("masks")

    def features(self, pooling: str) -> np.ndarray:
        """(n, dim) features of one pooling (NaN rows where ``valid`` is False).

        Multi-view stores give (n, n_views, dim), NaN where a view is absent (see ``present``); dense
        poolings give (n, h, w, dim) patch grids.
        """
        if pooling not in self.poolings:
            raise StoreError(
                f"store {self.path} has no pooling {pooling!r}; it has {', '.join(self.poolings)} "
                "(extract again with ExtractConfig(poolings=NAME) to add others)"
            )
        return read_array(self.group, self.path, f"features/{pooling}")

    def array(self, name: str) -> np.ndarray:
        """A row-aligned array: ``labels``, ``split``, ``ids``, ``groups``, ``valid``, ``present``.

        Raises:
            StoreError: the array is absent, or a chunk of it cannot be read (named, with the fix).
        """
        return read_array(self.group, self.path, name)

    @property
    def labels(self) -> np.ndarray:
        return self.array("labels")

    @property
    def split(self) -> np.ndarray:
        return self.array("split")

    @property
    def ids(self) -> np.ndarray:
        return self.array("ids")

    @property
    def valid(self) -> np.ndarray:
        return self.array("valid")

    @property
    def groups(self) -> np.ndarray | None:
        if "groups" in self.group or self.attrs.get("source", {}).get("has_groups"):
            return self.array("groups")  # an array the source had but whose metadata is lost: an error
        return None

    def summary(self) -> StoreSummary:
        return StoreSummary(
            path=self.path,
            dataset=str(self.attrs.get("source", {}).get("spec", "?")),
            backbone=str(self.attrs.get("backbone", {}).get("name", "?")),
            rows=self.n_rows,
            poolings=self.poolings,
            complete=self.complete,
            fingerprint=str(self.attrs.get("fingerprint", "")),
            image_size=self.attrs.get("backbone", {}).get("preprocess", {}).get("image_size"),
            resolution=str(self.attrs.get("backbone", {}).get("preprocess", {}).get("resolution", "")),
            weights=str(self.attrs.get("backbone", {}).get("weights_fingerprint", "")),
        )


def open_store(path: str | os.PathLike[str], *, require_complete: bool = True) -> EmbeddingStore:
    """Open a store for reading.

    Args:
        path: the store folder (or fsspec URL).
        require_complete: raise if extraction has not finished.

    Raises:
        StoreError: missing path, not a probe store, or incomplete when ``require_complete``.
    """
    p = str(path)
    try:
        group = open_group(p, mode="r")
    except Exception as exc:
        if is_url(p):
            check_url(p, owner="StoreChoice(store")  # a missing bucket, refused credentials, no endpoint
        if not isinstance(exc, (*_NOT_A_GROUP, KeyError)):
            raise
        raise StoreError(f"no embedding store at {p}; create it with `probe extract DATA --backbone NAME`") from None
    if group.attrs.get("format") != FORMAT or group.attrs.get("state") == "creating":
        raise StoreError(f"{p} is not a finished probe embedding store; extract it again with --overwrite")
    store = EmbeddingStore(p, group)
    if require_complete and not store.complete:
        cmd = store.attrs.get("command", "probe extract ...")
        raise StoreError(f"store {p} is incomplete (interrupted extraction); resume it by running `{cmd}` again")
    return store


def verify_store(path: str | os.PathLike[str]) -> StoreCheck:
    """Read back every chunk of every array of a store (checksums verified where the store has them).

    Args:
        path: the store folder (or fsspec URL).

    Returns:
        What was checked and every damaged chunk (``ok`` is False when there is any).

    Raises:
        StoreError: no probe store at ``path``.
    """
    store = open_store(path, require_complete=False)
    return check_group(store.group, store.path, store.attrs)


def list_stores(root: str | os.PathLike[str] = DEFAULT_ROOT) -> list[StoreSummary]:
    """Summaries of every probe store under ``root`` (a folder or URL; complete or not), sorted by path.

    Raises:
        StoreError: a URL root whose bucket is missing, refused or unreachable.
    """
    out: list[StoreSummary] = []
    if is_url(str(root)):
        check_url(str(root), owner="StoreChoice(store_root")
        for url in url_store_metas(str(root)):
            try:
                out.append(open_store(url, require_complete=False).summary())
            except StoreError:
                continue  # a group being created, or not a probe store
        return out
    base = Path(root)
    if not base.is_dir():
        return out
    for meta in sorted(base.glob("*/*.zarr/zarr.json")):
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, json.JSONDecodeError):
            continue
        if attrs.get("format") != FORMAT or attrs.get("state") == "creating":
            continue
        out.append(open_store(meta.parent, require_complete=False).summary())
    return out


def describe_store(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Provenance of one store as a plain dict (what ``probe store info`` prints)."""
    store = open_store(path, require_complete=False)
    a = store.attrs
    split_names = list(a.get("splits", []))
    codes, counts = np.unique(store.split, return_counts=True)
    return {
        "path": store.path,
        "complete": store.complete,
        "rows": store.n_rows,
        "valid_rows": int(np.count_nonzero(store.valid)),
        "poolings": store.poolings,
        **({"views": list(store.views)} if store.views else {}),
        **_dense_description(store),
        "dtype": a.get("dtype"),
        "chunk_rows": a.get("chunk_rows"),
        "checksums": a.get("checksums", "none"),
        "fingerprint": a.get("fingerprint"),
        "source": a.get("source"),
        "split_counts": {
            split_names[c] if c < len(split_names) else str(c): int(n) for c, n in zip(codes, counts, strict=True)
        },
        "backbone": a.get("backbone"),
        "precision": a.get("precision"),
        "fingerprint_inputs": a.get("fingerprint_inputs"),
        "versions": a.get("versions"),
        "created": a.get("created"),
        "command": a.get("command"),
        "runs": a.get("runs", []),
    }


def _dense_description(store: EmbeddingStore) -> dict[str, Any]:
    """Patch grids, label-map size and the bytes one row takes on disk before compression (dense stores)."""
    grids = store.grids
    if not grids:
        return {}
    itemsize = np.dtype(str(store.attrs.get("dtype", "float32"))).itemsize
    per_row = sum(g[0] * g[1] * store.poolings[p] * itemsize for p, g in grids.items())
    side = store.attrs.get("mask_size")
    per_row += int(side) ** 2 if side else 0
    return {
        "grids": {p: list(g) for p, g in grids.items()},
        **({"mask_size": side} if side else {}),
        "bytes_per_row": per_row,
        "bytes_total": per_row * store.n_rows,
    }
