"""Checksummed chunks, one-line read errors and ``verify_store`` (issue 12, items 4 and 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from probe.errors import StoreError
from probe.store import StoreLayout, StoreWriter, describe_store, open_store, verify_store


def _store(path: Path, *, compression: str = "none", n: int = 40, chunk: int = 8) -> str:
    """A complete store with known features: row i holds i / 10 in every column."""
    rng = np.random.default_rng(0)
    w = StoreWriter.create(
        str(path),
        layout=StoreLayout(n_rows=n, poolings={"gap": 6}, chunk_rows=chunk, compression=compression),
        labels=rng.integers(0, 3, n),
        splits=np.zeros(n, np.int8),
        ids=[f"s{i}" for i in range(n)],
        groups=None,
        attrs={"fingerprint": "f" * 64, "source": {"spec": "x", "classes": ["a", "b", "c"]}, "command": "probe x"},
    )
    feats = np.repeat(np.arange(n, dtype=np.float32)[:, None] / 10, 6, axis=1)
    for c in w.pending_chunks():
        lo, hi = w.chunk_bounds(c)
        w.write_chunk(c, {"gap": feats[lo:hi]}, np.ones(hi - lo, bool))
    w.finish({})
    return str(path)


def _flip(file: Path, at: int = 5, n: int = 32) -> None:
    data = bytearray(file.read_bytes())
    for i in range(at, at + n):
        data[i] ^= 0x10
    file.write_bytes(bytes(data))


def test_flipped_bits_in_a_feature_chunk_are_an_error_naming_it(tmp_path: Path) -> None:
    """Issue 12.4: 32 flipped values in an uncompressed chunk are no longer read silently."""
    path = _store(tmp_path / "s.zarr")
    assert describe_store(path)["checksums"] == "crc32c" and verify_store(path).ok
    _flip(tmp_path / "s.zarr/features/gap/c/3/0")
    with pytest.raises(StoreError, match=r"chunk features/gap/c/3/0 is damaged \(CRC32C checksum mismatch\);.*"
                       r"probe store verify .*ExtractConfig\(repair=True\)"):  # fmt: skip
        open_store(path).features("gap")
    check = verify_store(path)
    assert not check.ok and check.checksums and check.command == "probe x"
    assert [(d.array, d.chunk, d.key) for d in check.damaged] == [("features/gap", (3, 0), "features/gap/c/3/0")]


@pytest.mark.parametrize(
    ("compression", "damage", "read"),
    [
        ("none", "truncate", "features"),  # was ValueError: cannot reshape
        ("lz4", "flip", "features"),  # was a blosc decompression error
        ("lz4", "truncate", "features"),
        ("none", "flip", "labels"),  # a corrupt zstd labels chunk
        ("none", "metadata", "features"),  # a deleted features/gap/zarr.json: was KeyError
        ("none", "metadata", "labels"),
    ],
)
def test_every_read_failure_is_one_store_error(tmp_path: Path, compression: str, damage: str, read: str) -> None:
    """Issue 12.7: damaged stores give one-line StoreErrors, never tracebacks from zarr or a codec."""
    path = _store(tmp_path / "s.zarr", compression=compression)
    array = "features/gap" if read == "features" else "labels"
    chunk = tmp_path / "s.zarr" / array / ("c/1/0" if read == "features" else "c/0")
    if damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:-20])
    elif damage == "flip":
        _flip(chunk, at=2, n=8)
    else:
        (tmp_path / "s.zarr" / array / "zarr.json").unlink()
    store = open_store(path)
    with pytest.raises(StoreError) as info:
        store.features("gap") if read == "features" else store.labels
    message = str(info.value)
    assert "\n" not in message and f"store {path}: " in message and "probe store verify" in message
    assert (f"{array}/zarr.json" if damage == "metadata" else f"chunk {array}/c/") in message
    assert not verify_store(path).ok


def test_a_missing_chunk_file_of_a_finished_chunk_is_damage(tmp_path: Path) -> None:
    path = _store(tmp_path / "s.zarr")
    (tmp_path / "s.zarr/features/gap/c/2/0").unlink()  # reads back as the NaN fill value
    [damage] = verify_store(path).damaged
    assert damage.key == "features/gap/c/2/0" and damage.reason == "no features for valid rows"


def test_stores_without_checksums_still_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store made before checksums (no CRC32C codec, no layout attribute) reads and verifies as before."""
    import probe.store

    monkeypatch.setattr(probe.store, "_compressors", lambda compression: [])
    path = _store(tmp_path / "old.zarr")
    monkeypatch.undo()
    g = zarr.open_group(path, mode="r+")
    attrs = dict(g.attrs)
    del attrs["layout"], attrs["checksums"]
    g.attrs.put(attrs)
    store = open_store(path)
    assert store.features("gap")[3, 0] == pytest.approx(0.3) and describe_store(path)["checksums"] == "none"
    check = verify_store(path)
    assert check.ok and not check.checksums
    chunk = tmp_path / "old.zarr/features/gap/c/1/0"
    chunk.write_bytes(chunk.read_bytes()[:-8])  # without checksums zarr raised "cannot reshape"
    with pytest.raises(StoreError, match=r"chunk features/gap/c/1/0 is damaged \(cannot decode: ValueError"):
        open_store(path).features("gap")


def test_mark_damaged_makes_only_those_chunks_pending(tmp_path: Path) -> None:
    path = _store(tmp_path / "s.zarr")
    _flip(tmp_path / "s.zarr/features/gap/c/1/0")
    (tmp_path / "s.zarr/valid/zarr.json").unlink()
    w = StoreWriter.open(path)
    assert w.mark_damaged(verify_store(path)) == [0, 1, 2, 3, 4]  # lost valid metadata: every chunk again
    assert w.pending_chunks() == [0, 1, 2, 3, 4] and not w.attrs["complete"]
    path2 = _store(tmp_path / "t.zarr")
    _flip(tmp_path / "t.zarr/features/gap/c/1/0")
    w2 = StoreWriter.open(path2)
    assert w2.mark_damaged(verify_store(path2)) == [1] and w2.pending_chunks() == [1]


def test_multi_view_store_verifies_present_views_only(tmp_path: Path) -> None:
    n, views = 12, ("t1", "t2")
    w = StoreWriter.create(
        str(tmp_path / "mv.zarr"),
        layout=StoreLayout(n_rows=n, poolings={"gap": 4}, chunk_rows=4, views=views),
        labels=np.arange(n) % 2,
        splits=np.zeros(n, np.int8),
        ids=[f"s{i}" for i in range(n)],
        groups=[f"p{i}" for i in range(n)],
        attrs={"fingerprint": "f" * 64, "source": {"spec": "x", "classes": ["a", "b"], "has_groups": True}},
    )
    for c in w.pending_chunks():
        lo, hi = w.chunk_bounds(c)
        present = np.ones((hi - lo, 2), bool)
        present[:, 1] = False  # the second view is absent: its NaN features are not damage
        feats = np.full((hi - lo, 2, 4), np.nan, np.float32)
        feats[:, 0] = 1.0
        w.write_chunk(c, {"gap": feats}, np.ones(hi - lo, bool), present)
    w.finish({})
    assert (
        verify_store(w.path).ok and verify_store(w.path).arrays == 8
    )  # gap, labels, split, ids, groups, valid, done, present
    _flip(tmp_path / "mv.zarr/present/c/1/0", at=1, n=2)
    assert [d.key for d in verify_store(w.path).damaged] == ["present/c/1/0"]
    assert StoreWriter.open(w.path).mark_damaged(verify_store(w.path)) == [1]
