"""Extraction: stores, no-op reruns, new stores on changed settings, skipping, and kill -9 resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from probe.backbones import BackboneRequest, load_backbone
from probe.errors import ConfigError, DeviceError, ImageDecodeError, StoreError
from probe.extraction import ExtractConfig, extract, extract_embeddings
from probe.runtime import resolve_device
from probe.sources import open_source
from probe.store import open_store

REPO = Path(__file__).resolve().parents[1]


def _cfg(tmp_path: Path, **kw: object) -> ExtractConfig:
    base: dict[str, object] = {
        "store_root": str(tmp_path / "emb"),
        "batch_size": 8,
        "chunk_rows": 16,
        "num_workers": 0,
        "progress": False,
    }
    base.update(kw)
    return ExtractConfig(**base)  # type: ignore[arg-type]


def test_extract_writes_features_equal_to_direct_forward(image_folder: Path, tmp_path: Path) -> None:
    src = open_source(f"folder:{image_folder}")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    res = extract_embeddings(src, bb, _cfg(tmp_path, poolings=("cls", "mean", "last4")))
    assert res.complete and res.rows == 36 and res.rows_computed == 36 and not res.noop
    store = open_store(res.store)
    feats = store.features("cls")
    assert feats.shape == (36, bb.poolings["cls"]) and np.isfinite(feats).all()
    assert store.ids.tolist() == src.ids and store.labels.tolist() == src.labels.tolist()
    from probe.backbones import Preprocessor

    pre = Preprocessor(bb.preprocess)
    x = torch.stack([pre(src.load_image(i)) for i in range(16, 24)])
    with torch.no_grad():
        ref = bb.pooler(x)["cls"].numpy()
    np.testing.assert_allclose(feats[16:24], ref, rtol=1e-5, atol=1e-5)
    assert store.attrs["fingerprint"] == res.fingerprint and store.attrs["source"]["classes"] == ["cyst", "normal"]
    again = extract_embeddings(src, bb, _cfg(tmp_path, poolings=("cls", "mean", "last4")))
    assert again.noop and again.store == res.store and again.rows_computed == 0


def test_changed_image_size_makes_a_new_store(image_folder: Path, tmp_path: Path) -> None:
    src = open_source(f"folder:{image_folder}")
    a = extract_embeddings(src, load_backbone("timm:test_vit", pretrained=False, image_size=32), _cfg(tmp_path))
    b = extract_embeddings(src, load_backbone("timm:test_vit", pretrained=False, image_size=48), _cfg(tmp_path))
    assert a.store != b.store and a.fingerprint != b.fingerprint and not b.noop
    assert open_store(a.store).complete and open_store(b.store).complete  # the old store is untouched
    assert open_store(b.store).attrs["backbone"]["preprocess"]["image_size"] == 48


def test_explicit_store_with_other_settings_needs_overwrite(image_folder: Path, tmp_path: Path) -> None:
    src = open_source(f"folder:{image_folder}")
    store = str(tmp_path / "mine.zarr")
    extract_embeddings(
        src, load_backbone("timm:test_vit", pretrained=False, image_size=32), _cfg(tmp_path, store=store)
    )
    bb48 = load_backbone("timm:test_vit", pretrained=False, image_size=48)
    with pytest.raises(StoreError, match=r"other settings.*ExtractConfig\(overwrite=True\)"):
        extract_embeddings(src, bb48, _cfg(tmp_path, store=store))
    res = extract_embeddings(src, bb48, _cfg(tmp_path, store=store, overwrite=True))
    assert res.rows_computed == 36 and open_store(store).attrs["fingerprint"] == res.fingerprint


def test_corrupt_image_raises_or_is_skipped(image_folder: Path, tmp_path: Path) -> None:
    bad = image_folder / "train" / "cyst" / "cyst_002.png"
    bad.write_bytes(b"broken")
    src = open_source(f"folder:{image_folder}")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    with pytest.raises(ImageDecodeError, match="'train/cyst/cyst_002.png'.*cannot decode"):
        extract_embeddings(src, bb, _cfg(tmp_path))
    res = extract_embeddings(src, bb, _cfg(tmp_path, on_error="skip"))
    store = open_store(res.store)
    row = src.ids.index("train/cyst/cyst_002.png")
    assert res.skipped == 1 and not store.valid[row] and store.valid.sum() == 35
    assert np.isnan(store.features("cls")[row]).all()
    assert np.isfinite(store.features("cls")[store.valid]).all()


def test_bad_options(image_folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"ExtractConfig\(batch_size=0\) is invalid"):
        ExtractConfig(batch_size=0)
    with pytest.raises(
        ConfigError,
        match=r"ExtractConfig\(chunk_rows=10\) must be a positive multiple of ExtractConfig\(batch_size=4\)",
    ):
        ExtractConfig(batch_size=4, chunk_rows=10)
    assert ExtractConfig(batch_size=100).resolved_chunk_rows() == 4100

    if not torch.cuda.is_available():
        with pytest.raises(
            DeviceError,
            match=r"resolve_device\(device='cuda'\): CUDA is not available here; use resolve_device\(device=cpu\)",
        ):
            resolve_device("cuda")
    with pytest.raises(
        ConfigError, match=r"ExtractConfig\(poolings=last4\) is not offered by efficientnet_lite0; choose from gap"
    ):
        extract(f"folder:{image_folder}", backbone="efficientnet_lite0", config=ExtractConfig(poolings=("last4",)))


def test_unwritable_store_root(image_folder: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"is not writable.*ExtractConfig\(store_root=DIR\)"):
        extract(
            f"folder:{image_folder}",
            backbone=BackboneRequest("timm:test_vit", pretrained=False),
            config=ExtractConfig(store_root=str(blocker / "sub"), progress=False),
        )


def _extract_cmd(data_root: Path, store_root: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli",
        "extract",
        "medmnist:breastmnist",
        "--data-root",
        str(data_root),
        "--limit",
        "120",
        "--image-size",
        "128",
        "--batch-size",
        "16",
        "--chunk-rows",
        "48",
        "--num-workers",
        "0",
        "--store-root",
        str(store_root),
        "--json",
        "--no-progress",
    ]


def test_sigkill_mid_run_resumes_to_identical_features(medmnist_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    ref = subprocess.run(
        _extract_cmd(medmnist_root, tmp_path / "ref"), env=env, capture_output=True, text=True, check=True
    )
    ref_store = json.loads(ref.stdout)["store"]

    root = tmp_path / "killed"
    proc = subprocess.Popen(_extract_cmd(medmnist_root, root), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    done_dir = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(root.glob("*/*.zarr/done/c/*"))
        if len(found) >= 2:
            done_dir = found[0].parent
            break
        time.sleep(0.02)
    assert proc.poll() is None, "extraction finished before it could be killed; make the run longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert done_dir is not None
    store_dir = done_dir.parents[1]
    assert not open_store(store_dir, require_complete=False).complete

    resumed = subprocess.run(_extract_cmd(medmnist_root, root), env=env, capture_output=True, text=True, check=True)
    out = json.loads(resumed.stdout)
    assert out["store"] == str(store_dir) and out["complete"] and out["resumed_from"] > 0
    assert out["rows_computed"] < out["rows"] == 318  # 120 train + 78 val + 120 test
    a, b = open_store(ref_store), open_store(out["store"])
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.features("gap"), b.features("gap"))  # bit-identical
    again = subprocess.run(_extract_cmd(medmnist_root, root), env=env, capture_output=True, text=True, check=True)
    assert json.loads(again.stdout)["noop"] is True


def test_foreign_folder_is_never_overwritten(image_folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "results"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    with pytest.raises(StoreError, match="exists and is not a probe store"):
        extract_embeddings(open_source(f"folder:{image_folder}"), bb, _cfg(tmp_path, store=str(target)))
    assert (target / "precious.txt").read_text() == "keep me"


def test_reading_a_store_does_not_import_torch(image_folder: Path, tmp_path: Path) -> None:
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    res = extract_embeddings(open_source(f"folder:{image_folder}"), bb, _cfg(tmp_path))
    code = (
        "import sys, probe\n"
        f"s = probe.open_store({res.store!r})\n"
        "assert s.features('cls').shape[0] == 36 and s.complete\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_float16_lz4_store(image_folder: Path, tmp_path: Path) -> None:
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    src = open_source(f"folder:{image_folder}")
    a = extract_embeddings(src, bb, _cfg(tmp_path))
    b = extract_embeddings(src, bb, _cfg(tmp_path, store_dtype="float16", compression="lz4"))
    assert a.store != b.store
    fa, fb = open_store(a.store).features("cls"), open_store(b.store).features("cls")
    assert fb.dtype == np.float16 and open_store(b.store).attrs["compression"] == "lz4"
    np.testing.assert_allclose(fb.astype(np.float32), fa, rtol=2e-3, atol=2e-3)


def test_overwrite_never_deletes_a_foreign_folder_or_file(image_folder: Path, tmp_path: Path) -> None:
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    src = open_source(f"folder:{image_folder}")
    with pytest.raises(StoreError, match="not a probe store; it is left untouched"):
        extract_embeddings(src, bb, _cfg(tmp_path, store=str(image_folder), overwrite=True))
    assert len(open_source(f"folder:{image_folder}")) == 36  # the dataset is still there
    plain = tmp_path / "notes.txt"
    plain.write_text("x")
    with pytest.raises(StoreError, match="is a file, not an embedding store"):
        extract_embeddings(src, bb, _cfg(tmp_path, store=str(plain), overwrite=True))


def _interrupt(store: str, *, chunks: list[int], finished: bool) -> None:
    import zarr

    g = zarr.open_group(store, mode="r+")
    for c in chunks:
        g["done"][c] = False  # type: ignore[index]
    g.attrs.update({"complete": finished, "state": "complete" if finished else "extracting"})


def test_killed_between_last_chunk_and_finish_completes_on_rerun(image_folder: Path, tmp_path: Path) -> None:
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    src = open_source(f"folder:{image_folder}")
    first = extract_embeddings(src, bb, _cfg(tmp_path))
    _interrupt(first.store, chunks=[], finished=False)
    res = extract_embeddings(src, bb, _cfg(tmp_path, batch_size=4))  # nothing left to compute: any batch size
    assert res.complete and res.rows_computed == 0 and res.resumed_from == 0
    assert open_store(res.store).complete


def test_resume_requires_the_same_batch_size_and_recomputes_only_missing_chunks(
    image_folder: Path, tmp_path: Path
) -> None:
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    src = open_source(f"folder:{image_folder}")
    first = extract_embeddings(src, bb, _cfg(tmp_path))
    before = open_store(first.store).features("cls")
    _interrupt(first.store, chunks=[1], finished=False)
    with pytest.raises(StoreError, match=r"started with ExtractConfig\(batch_size=8\) on cpu; resume it with the same"):
        extract_embeddings(src, bb, _cfg(tmp_path, batch_size=4, chunk_rows=16))
    res = extract_embeddings(src, bb, _cfg(tmp_path))
    assert res.resumed_from == 16 and res.rows_computed == 16
    np.testing.assert_array_equal(open_store(res.store).features("cls"), before)


def test_trailing_slash_names_the_same_store(image_folder: Path, tmp_path: Path) -> None:
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    src = open_source(f"folder:{image_folder}")
    a = extract_embeddings(src, bb, _cfg(tmp_path, store=str(tmp_path / "s.zarr") + "/"))
    b = extract_embeddings(src, bb, _cfg(tmp_path, store=str(tmp_path / "s.zarr")))
    assert b.noop and a.store == b.store == str(tmp_path / "s.zarr")


def test_alpha_policy_is_part_of_the_fingerprint(image_folder: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGBA", (24, 24), (200, 10, 10, 128)).save(image_folder / "train" / "cyst" / "alpha.png")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    composite = extract_embeddings(open_source(f"folder:{image_folder}", limit=20), bb, _cfg(tmp_path))
    rejected = extract_embeddings(
        open_source(f"folder:{image_folder}", rgba="reject", limit=20), bb, _cfg(tmp_path, on_error="skip")
    )
    assert composite.store != rejected.store and rejected.skipped == 1 and composite.skipped == 0


def test_fsspec_url_store_and_foreign_prefix(image_folder: Path, tmp_path: Path) -> None:
    import fsspec

    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    src = open_source(f"folder:{image_folder}")
    fs = fsspec.filesystem("memory")
    fs.pipe("/probe-test/foreign/img.png", b"user data")
    with pytest.raises(StoreError, match="is not a probe store; it is left untouched"):
        extract_embeddings(src, bb, _cfg(tmp_path, store="memory://probe-test/foreign", overwrite=True))
    assert fs.cat("/probe-test/foreign/img.png") == b"user data"
    res = extract_embeddings(src, bb, _cfg(tmp_path, store="memory://probe-test/store.zarr"))
    local = extract_embeddings(src, bb, _cfg(tmp_path))
    np.testing.assert_array_equal(open_store(res.store).features("cls"), open_store(local.store).features("cls"))
    assert extract_embeddings(src, bb, _cfg(tmp_path, store="memory://probe-test/store.zarr")).noop


def test_limit_reads_only_the_subset(image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import probe.sources.files as files

    hashed: list[str] = []
    real = files._blake2b_file
    monkeypatch.setattr(files, "_blake2b_file", lambda p: hashed.append(p) or real(p))
    open_source(f"folder:{image_folder}", limit=2).fingerprint()
    assert len(hashed) == 6  # 2 per split, not all 36 files


def test_unreadable_path_in_a_manifest_is_a_clean_decode_error(image_folder: Path, tmp_path: Path) -> None:
    (image_folder / "m.csv").write_text("path,label\ntrain/cyst,cyst\ntrain/normal/normal_000.png,normal\n")
    src = open_source(f"csv:{image_folder / 'm.csv'}")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    with pytest.raises(ImageDecodeError, match="'train/cyst'.*cannot decode"):
        extract_embeddings(src, bb, _cfg(tmp_path))
    assert extract_embeddings(src, bb, _cfg(tmp_path, on_error="skip")).skipped == 1


def test_complete_store_check_takes_no_lock(image_folder: Path, tmp_path: Path) -> None:
    """Issue 12.6: confirming a complete store reads it without the writer lock, so concurrent probing
    commands never fail with "being written by pid ..." (the lock held here stands for a writer)."""
    from concurrent.futures import ThreadPoolExecutor

    from probe.store import store_lock

    src = open_source(f"folder:{image_folder}")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    first = extract_embeddings(src, bb, _cfg(tmp_path))
    with store_lock(first.store):  # another process holding the lock (flock conflicts across file handles)
        again = extract_embeddings(src, bb, _cfg(tmp_path))
        assert again.noop and again.rows == 36 and again.skipped == 0
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: extract_embeddings(src, bb, _cfg(tmp_path)), range(8)))
    assert all(r.noop and r.store == first.store for r in results)


def test_repair_recomputes_only_damaged_chunks(image_folder: Path, tmp_path: Path) -> None:
    """Issue 12.4: --repair marks chunks that fail their checksum (or lost rows' arrays) not done and
    recomputes only those; the repaired store equals the undamaged one."""
    from probe.store import verify_store

    src = open_source(f"folder:{image_folder}")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    res = extract_embeddings(src, bb, _cfg(tmp_path))
    before = open_store(res.store).features("cls")
    chunk = Path(res.store) / "features/cls/c/1/0"
    data = bytearray(chunk.read_bytes())
    data[40:72] = bytes(b ^ 0xFF for b in data[40:72])
    chunk.write_bytes(bytes(data))
    (Path(res.store) / "labels/c/0").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="chunk features/cls/c/1/0 is damaged"):
        open_store(res.store).features("cls")
    assert extract_embeddings(src, bb, _cfg(tmp_path)).noop  # without --repair nothing is read back
    fixed = extract_embeddings(src, bb, _cfg(tmp_path, repair=True))
    assert fixed.repaired == [1] and fixed.rows_computed == 16 and not fixed.noop
    store = open_store(res.store)
    np.testing.assert_array_equal(store.features("cls"), before)
    assert store.labels.tolist() == src.labels.tolist() and verify_store(res.store).ok
    again = extract_embeddings(src, bb, _cfg(tmp_path, repair=True))
    assert again.noop and again.repaired == []
    with pytest.raises(ConfigError, match=r"repair=True.*overwrite=True"):
        _cfg(tmp_path, repair=True, overwrite=True)


def test_several_writers_get_chunks_enough_to_share() -> None:
    cfg = ExtractConfig(batch_size=32)
    assert cfg.resolved_chunk_rows(n_rows=128) == 4096  # one writer: the resume granularity only
    assert cfg.resolved_chunk_rows(n_rows=128, writers=2) == 32  # 4 chunks: 2 per rank
    assert cfg.resolved_chunk_rows(n_rows=11959, writers=8) == 384  # BloodMNIST train on 8 GPUs: 32 chunks
    assert cfg.resolved_chunk_rows(n_rows=10**6, writers=8) == 4096  # large stores keep 4096-row chunks
    assert cfg.resolved_chunk_rows(n_rows=10, writers=4) == 32  # never below one batch
    assert cfg.resolved_chunk_rows(28, n_rows=1000, writers=2) == 128  # volumes: rows, whole batches of slices
    assert ExtractConfig(batch_size=32, chunk_rows=64).resolved_chunk_rows(n_rows=128, writers=2) == 64
