"""The fast JPEG path: reduced-size decoding that keeps the short side, and its own store fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.backbones import load_backbone
from probe.errors import ConfigError
from probe.extraction import ExtractConfig, extract_embeddings
from probe.sources import open_source
from probe.sources.images import read_image, rescale_to_unit


def _photo(path: Path, size: tuple[int, int], fmt: str = "JPEG") -> Path:
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack([xx * 255 // size[0], yy * 255 // size[1], (xx + yy) % 256], axis=2).astype(np.uint8)
    Image.fromarray(rgb).save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


def test_fast_path_keeps_the_short_side_and_the_picture(tmp_path: Path) -> None:
    jpg = _photo(tmp_path / "a.jpg", (1024, 768))
    exact = read_image(jpg)
    fast = read_image(jpg, fast_side=64)
    assert exact.shape == (768, 1024, 3) and fast.dtype == np.uint8
    assert 64 <= min(fast.shape[:2]) < 128 and fast.shape[1] * 3 == fast.shape[0] * 4  # 1/8 DCT, then reduce
    small = np.asarray(Image.fromarray(exact).resize(fast.shape[1::-1], Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(small - fast).mean() < 4  # the same picture, within JPEG noise
    png = _photo(tmp_path / "a.png", (256, 192), "PNG")
    np.testing.assert_array_equal(read_image(png, fast_side=32), read_image(png))  # only JPEGs take the path


def test_sixteen_bit_rescale_stays_float32() -> None:
    a = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    out = rescale_to_unit(a)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1


def test_fast_decode_is_its_own_store(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "d" / split / cls).mkdir(parents=True)
            for i in range(2):
                _photo(tmp_path / "d" / split / cls / f"{i}.jpg", (320 + 40 * i, 240))
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    cfg = {"store_root": str(tmp_path / "emb"), "batch_size": 4, "num_workers": 0, "progress": False}
    exact = extract_embeddings(open_source(f"folder:{tmp_path / 'd'}"), bb, ExtractConfig(**cfg))
    fast = extract_embeddings(open_source(f"folder:{tmp_path / 'd'}"), bb, ExtractConfig(**cfg, decode="fast"))
    assert fast.fingerprint != exact.fingerprint and fast.store != exact.store
    with pytest.raises(ConfigError, match=r"ExtractConfig\(decode='quick'\) is invalid; use one of exact, fast"):
        ExtractConfig(decode="quick")
