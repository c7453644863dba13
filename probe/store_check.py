"""Reading store arrays safely and checking every chunk of a store (no torch).

Any failure to read an array (a CRC32C mismatch, a truncated or corrupt chunk, missing metadata)
becomes a one-line :class:`~probe.errors.StoreError` naming the array and the chunk, instead of a
traceback from deep inside zarr or a codec. :func:`check_group` reads every chunk one by one and
lists the damaged ones; :meth:`probe.store.StoreWriter.mark_damaged` turns that list into pending
chunks for ``ExtractConfig(repair=True)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import zarr

from probe.errors import ProbeError, StoreError

ROW_ARRAYS: tuple[str, ...] = ("labels", "split", "ids", "groups")  # written once, whole, from the source


def repair_hint(path: str) -> str:
    """What to do about a damaged store."""
    return (
        f"check every chunk with `probe store verify {path}`, then rerun the extraction with "
        "ExtractConfig(repair=True) to recompute only the damaged chunks"
    )


@dataclass(frozen=True)
class DamagedChunk:
    """One chunk (or array metadata) that cannot be read back as written."""

    array: str  # array name, e.g. "features/gap"
    chunk: tuple[int, ...]  # chunk grid index; () when the array's metadata itself is unreadable
    key: str  # store key of the file, e.g. "features/gap/c/3/0" or "features/gap/zarr.json"
    reason: str  # one line: "checksum mismatch", "cannot decode (...)", "no features for valid rows"


@dataclass(frozen=True)
class StoreCheck:
    """The outcome of :func:`probe.store.verify_store`."""

    path: str
    checksums: bool  # chunks carry CRC32C (layout 2); without them only undecodable chunks are found
    arrays: int  # arrays checked
    chunks: int  # chunks read
    damaged: tuple[DamagedChunk, ...]  # empty when the store is intact
    command: str = ""  # the extraction command recorded in the store (rerun it with --repair)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "damaged": [asdict(d) for d in self.damaged]}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "checksum" in text.lower():
        return "CRC32C checksum mismatch"
    return f"cannot decode: {type(exc).__name__}: {text[:160]}"


def open_array(group: zarr.Group, path: str, name: str) -> zarr.Array:
    """The array ``name`` of a store group.

    Raises:
        StoreError: its metadata is missing or unreadable.
    """
    try:
        return cast(zarr.Array, group[name])
    except Exception as exc:
        raise StoreError(
            f"store {path}: array {name!r} is missing or its metadata ({name}/zarr.json) is unreadable "
            f"({_reason(exc)}); {repair_hint(path)}"
        ) from None


def read_array(group: zarr.Group, path: str, name: str) -> np.ndarray:
    """A whole array of a store group as numpy.

    Raises:
        StoreError: the metadata or a chunk cannot be read; names the first damaged chunk.
    """
    arr = open_array(group, path, name)
    try:
        return np.asarray(arr[:])
    except ProbeError:
        raise
    except Exception as exc:
        bad = next(iter(scan_array(arr, name)), None)
        where = (
            f"chunk {bad.key} is damaged ({bad.reason})" if bad else f"array {name!r} cannot be read ({_reason(exc)})"
        )
        raise StoreError(f"store {path}: {where}; {repair_hint(path)}") from None


def chunk_key(arr: zarr.Array, name: str, index: tuple[int, ...]) -> str:
    """The store key of chunk ``index`` of array ``name``, e.g. ``features/gap/c/3/0``."""
    return f"{name}/{arr.metadata.encode_chunk_key(index)}"


def scan_array(arr: zarr.Array, name: str, blocks: dict[int, np.ndarray] | None = None) -> list[DamagedChunk]:
    """Read every chunk of ``arr`` on its own; the damaged ones.

    Args:
        arr: the array.
        name: its name in the store.
        blocks: filled with chunk row index -> decoded chunk (2-D and 3-D row-chunked arrays only).
    """
    damaged = []
    for index in np.ndindex(*arr.cdata_shape):
        try:
            block = arr.get_block_selection(index)
        except Exception as exc:
            damaged.append(DamagedChunk(name, tuple(index), chunk_key(arr, name, index), _reason(exc)))
            continue
        if blocks is not None:
            blocks[index[0]] = np.asarray(block)
    return damaged


def check_group(group: zarr.Group, path: str, attrs: dict[str, Any]) -> StoreCheck:
    """Read every chunk of every array of a probe store; features of finished chunks must be finite.

    A feature chunk that is marked done but holds no features for its valid rows (a deleted chunk
    file reads as the NaN fill value) counts as damaged too.
    """
    names = [f"features/{p}" for p in attrs.get("poolings", {})] + ["labels", "split", "ids"]
    names += ["groups"] * bool(attrs.get("source", {}).get("has_groups") or "groups" in group) + ["valid", "done"]
    names += ["present"] * bool(attrs.get("views")) + ["masks"] * (attrs.get("mask_size") is not None)
    damaged: list[DamagedChunk] = []
    decoded: dict[str, dict[int, np.ndarray]] = {}
    chunks = 0
    for name in names:
        try:
            arr = open_array(group, path, name)
        except StoreError:
            damaged.append(DamagedChunk(name, (), f"{name}/zarr.json", "array metadata missing or unreadable"))
            continue
        decoded[name] = {}
        damaged += scan_array(arr, name, decoded[name])
        chunks += int(np.prod(arr.cdata_shape))
    damaged += _unfilled_chunks(decoded, attrs)
    checksums = attrs.get("checksums") == "crc32c"
    return StoreCheck(path, checksums, len(names), chunks, tuple(damaged), str(attrs.get("command", "")))


def _unfilled_chunks(decoded: dict[str, dict[int, np.ndarray]], attrs: dict[str, Any]) -> list[DamagedChunk]:
    """Feature chunks marked done whose valid rows (present views) hold NaN: their file went missing."""
    out = []
    done, valid = decoded.get("done", {}), decoded.get("valid", {})
    present = decoded.get("present") if attrs.get("views") else None
    for name, blocks in decoded.items():
        if not name.startswith("features/"):
            continue
        for c, block in blocks.items():
            if c not in done or not bool(done[c][0]) or c not in valid:
                continue
            if present is not None:
                if c not in present:
                    continue
                rows = block[present[c]]
            else:
                rows = block[valid[c].astype(bool)]
            if rows.size and not np.isfinite(rows).all():
                key = f"{name}/c/{c}/" + "/".join("0" * (block.ndim - 1))
                out.append(DamagedChunk(name, (c, *(0,) * (block.ndim - 1)), key, "no features for valid rows"))
    return out
