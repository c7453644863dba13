"""Store layout, round trip, progress mask, locking and listing."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from probe.errors import StoreError, StoreLockedError
from probe.store import StoreLayout, StoreWriter, describe_store, list_stores, open_store, store_lock, store_path


def _new(path: Path, n: int = 10, chunk: int = 4) -> StoreWriter:
    layout = StoreLayout(n_rows=n, poolings={"cls": 3, "mean": 2}, chunk_rows=chunk)
    return StoreWriter.create(
        str(path),
        layout=layout,
        labels=np.arange(n) % 2,
        splits=np.zeros(n, np.int8),
        ids=[f"s{i}" for i in range(n)],
        groups=[f"p{i // 3}" for i in range(n)],
        attrs={
            "fingerprint": "f" * 64,
            "source": {"spec": "x", "classes": ["a", "b"]},
            "backbone": {"name": "b"},
            "splits": ["train"],
        },
    )


def test_round_trip_and_progress(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = _new(tmp_path / "s.zarr")
    assert w.pending_chunks() == [0, 1, 2]
    data = {"cls": rng.normal(size=(10, 3)).astype(np.float32), "mean": rng.normal(size=(10, 2)).astype(np.float32)}
    for c in (0, 2):
        lo, hi = w.chunk_bounds(c)
        w.write_chunk(c, {k: v[lo:hi] for k, v in data.items()}, np.ones(hi - lo, bool))
    assert w.pending_chunks() == [1]
    with pytest.raises(StoreError, match="is incomplete.*resume"):
        open_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="unwritten chunks"):
        w.finish({})
    w.write_chunk(1, {k: v[4:8] for k, v in data.items()}, np.array([True, False, True, True]))
    w.finish({"runs": []})
    s = open_store(tmp_path / "s.zarr")
    np.testing.assert_array_equal(s.features("cls"), data["cls"])
    np.testing.assert_array_equal(s.features("mean"), data["mean"])
    assert s.ids.tolist()[:2] == ["s0", "s1"] and s.groups is not None and s.groups[3] == "p1"
    assert s.valid.sum() == 9 and s.labels.tolist()[:3] == [0, 1, 0]
    chunks = s.group["features/cls"].chunks
    assert chunks == (4, 3)  # whole rows per chunk: the feature dim is never split
    assert describe_store(tmp_path / "s.zarr")["valid_rows"] == 9
    with pytest.raises(StoreError, match="no pooling 'last4'; it has cls, mean"):
        s.features("last4")


def test_missing_store_says_how_to_extract(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no embedding store at .*probe extract"):
        open_store(tmp_path / "none.zarr")


def _hold_lock(path: str, ready: mp.synchronize.Event, release: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    with store_lock(path):
        ready.set()
        release.wait(10)


def test_second_writer_gets_a_lock_error(tmp_path: Path) -> None:
    path = str(tmp_path / "s.zarr")
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(path, ready, release))
    p.start()
    try:
        assert ready.wait(10)
        with pytest.raises(StoreLockedError, match=r"being written by pid \d+"), store_lock(path):
            pass
    finally:
        release.set()
        p.join(10)
    with store_lock(path):  # released when the holder exits
        pass


def test_list_and_paths(tmp_path: Path) -> None:
    path = store_path(tmp_path, dataset="blood mnist", backbone="timm:vit/b", fingerprint="ab" * 32)
    assert path.endswith("blood-mnist/timm-vit-b-abababababababab.zarr")
    _new(Path(path))
    rows = list_stores(tmp_path)
    assert len(rows) == 1 and rows[0].rows == 10 and not rows[0].complete
    assert list_stores(tmp_path / "nothing") == []
