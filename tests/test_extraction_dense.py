"""Patch-grid extraction (--pooling patch): shapes, dtype, label maps, chunking, resume after kill -9."""

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

from probe import extract, open_store
from probe.backbones import BackboneRequest
from probe.errors import ConfigError
from probe.extraction import ExtractConfig
from probe.sources import open_source
from probe.store import describe_store
from tests.seg_synth import make_seg_2d


@pytest.fixture(scope="module")
def seg2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_seg_2d(tmp_path_factory.mktemp("seg2d"), n=(6, 2, 3), side=24)


@pytest.mark.parametrize(
    ("name", "pooling", "grid", "width"),
    [("timm:test_vit", "patch", (2, 2), 64), ("timm:test_vit", "patch-last4", (2, 2), 256),
     ("timm:efficientnet_lite0", "patch-s3", (4, 4), 40), ("timm:efficientnet_lite0", "patch", (1, 1), 1280)],
)  # fmt: skip
def test_patch_grids_equal_the_models_own_maps(seg2d: Path, tmp_path: Path, name: str, pooling: str,
                                               grid: tuple[int, int], width: int) -> None:  # fmt: skip
    request = BackboneRequest(name, pretrained=False, image_size=32)
    cfg = ExtractConfig(poolings=(pooling,), store_root=str(tmp_path), progress=False, batch_size=4)
    made = extract(f"seg:{seg2d}", backbone=request, config=cfg)
    store = open_store(made.store)
    feats = store.features(pooling)
    assert feats.shape == (11, *grid, width) and feats.dtype == np.float16  # float16 by default for grids
    assert store.grids == {pooling: grid} and store.masks.shape == (11, 32, 32)
    # the stored grid is the backbone's own output for the preprocessed image
    backbone = request.load()
    src = open_source(f"seg:{seg2d}")
    from probe.backbones import Preprocessor

    x = Preprocessor(backbone.preprocess)(src.load_image(0))[None]
    with torch.inference_mode():
        ref = backbone.pooler(x)[pooling][0].numpy()
    np.testing.assert_allclose(feats[0].astype(np.float32), ref, rtol=2e-3, atol=2e-3)
    info = describe_store(made.store)
    assert info["bytes_per_row"] == grid[0] * grid[1] * width * 2 + 32 * 32


def test_masks_follow_the_image_geometry_by_nearest_neighbour(seg2d: Path, tmp_path: Path) -> None:
    made = extract(f"seg:{seg2d}", backbone=BackboneRequest("timm:test_vit", pretrained=False, image_size=48),
                   config=ExtractConfig(poolings=("patch",), store_root=str(tmp_path), progress=False))  # fmt: skip
    masks = open_store(made.store).masks
    src = open_source(f"seg:{seg2d}")
    original = src.load_mask(0)
    assert set(np.unique(masks[0])) == set(np.unique(original))  # no blended labels
    yy = (np.arange(48) + 0.5) * 24 / 48  # nearest-exact: the source pixel under each output pixel centre
    np.testing.assert_array_equal(masks[0], original[np.ix_(yy.astype(int), yy.astype(int))])


def test_segmentation_source_needs_patch_grids_and_grids_need_their_own_store(seg2d: Path, tmp_path: Path) -> None:
    tiny = BackboneRequest("timm:test_vit", pretrained=False, image_size=32)
    cfg = ExtractConfig(store_root=str(tmp_path), progress=False)
    with pytest.raises(ConfigError, match=r"segmentation source: extract patch grids, ExtractConfig\(poolings=patch\)"):
        extract(f"seg:{seg2d}", backbone=tiny, config=cfg)
    mixed = ExtractConfig(poolings=("cls", "patch"), store_root=str(tmp_path), progress=False)
    with pytest.raises(ConfigError, match="mixes pooled vectors with patch grids"):
        extract(f"seg:{seg2d}", backbone=tiny, config=mixed)


def test_dense_chunks_hold_whole_batches_near_the_byte_budget() -> None:
    cfg = ExtractConfig(batch_size=64)
    assert cfg.resolved_chunk_rows(row_bytes=256 * 768 * 2) == 128  # ViT-B/14 float16: 64 MiB / 393 KB
    assert cfg.resolved_chunk_rows(row_bytes=10**9) == 64  # never below one batch
    assert cfg.resolved_chunk_rows() == 4096


def _cmd(manifest: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "cli", "extract", f"seg:{manifest}", "--backbone", "timm:efficientnet_lite0",
            "--random-weights", "--image-size", "96", "--pooling", "patch-s4", "--batch-size", "4",
            "--chunk-rows", "8", "--num-workers", "0", "--store-root", str(root), "--json",
            "--no-progress"]  # fmt: skip


def test_sigkill_during_patch_extraction_resumes_to_identical_grids(tmp_path: Path) -> None:
    manifest = make_seg_2d(tmp_path / "data", n=(40, 4, 8), side=48)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    ref = subprocess.run(_cmd(manifest, tmp_path / "ref"), env=env, capture_output=True, text=True, check=True)
    root = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(manifest, root), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline, killed = time.monotonic() + 120, False
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(root.glob("*/*.zarr/done/c/*"))) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    proc.communicate()
    assert killed, "extraction finished before it could be killed; make the run longer"
    out = json.loads(subprocess.run(_cmd(manifest, root), env=env, capture_output=True, text=True, check=True).stdout)
    assert out["complete"] and out["resumed_from"] > 0 and out["rows_computed"] < out["rows"] == 52
    a, b = open_store(json.loads(ref.stdout)["store"]), open_store(out["store"])
    np.testing.assert_array_equal(a.features("patch-s4"), b.features("patch-s4"))  # bit-identical
    np.testing.assert_array_equal(a.masks, b.masks)
