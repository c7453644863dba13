"""Image decoding: channels, bit depth, alpha, palette and broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.errors import ConfigError, ImageDecodeError
from probe.sources.images import read_image, rescale_to_unit, to_three_channels


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    a = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(a, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], a)
    np.testing.assert_array_equal(out[:, :, 2], a)


def test_16bit_is_rescaled_not_saturated(tmp_path: Path) -> None:
    a = np.linspace(1000, 4000, 100, dtype=np.uint16).reshape(10, 10)  # 12-bit data in a 16-bit PNG
    Image.fromarray(a).save(tmp_path / "d.png")
    out = read_image(tmp_path / "d.png")
    assert out.dtype == np.float32 and out.shape == (10, 10, 3)
    assert out.min() == 0.0 and out.max() == 1.0
    # distinct input levels stay distinct (PIL's 8-bit conversion would clip them all to 255)
    assert len(np.unique(out[:, :, 0])) == len(np.unique(a))


def test_rgba_composited_on_black_or_rejected(tmp_path: Path) -> None:
    a = np.zeros((4, 4, 4), dtype=np.uint8)
    a[..., 0] = 200
    a[..., 3] = 128
    Image.fromarray(a, mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (4, 4, 3)
    assert out[0, 0, 0] == round(200 * 128 / 255)
    with pytest.raises(ImageDecodeError, match=r"alpha channel.*SourceRequest\(rgba=composite\)"):
        read_image(tmp_path / "a.png", rgba="reject")


def test_palette_is_expanded(tmp_path: Path) -> None:
    img = Image.new("P", (5, 5))
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.putpixel((1, 1), 1)
    img.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert tuple(out[1, 1]) == (10, 200, 30) and tuple(out[0, 0]) == (0, 0, 0)


def test_corrupt_and_missing_files_name_the_sample(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(
        ImageDecodeError, match=r"sample .x/bad.png. \(.*bad.png\): cannot decode image.*ExtractConfig\(on_error=skip\)"
    ):
        read_image(tmp_path / "bad.png", sample_id="x/bad.png")
    with pytest.raises(ImageDecodeError, match=r"gone.png\): file not found"):
        read_image(tmp_path / "gone.png", sample_id="gone")


def test_helpers_shapes() -> None:
    assert to_three_channels(np.zeros((3, 4, 1), np.uint8)).shape == (3, 4, 3)
    assert rescale_to_unit(np.full((2, 2), 7.0)).max() == 0.0


def test_decompression_bomb_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2 x limit: Pillow refuses
    with pytest.raises(ImageDecodeError, match=r"huge.png.*tile or downscale.*ExtractConfig\(on_error=skip\)"):
        read_image(tmp_path / "huge.png", sample_id="huge")


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` (its pixel data is far too short)."""
    import struct
    import zlib

    Image.fromarray(np.zeros((1, 1), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    path.write_bytes(bytes(data))
    return path


def test_image_above_the_pixel_budget_is_refused_before_decoding(tmp_path: Path) -> None:
    """Issue 12.9: a small PNG declaring 13000x13000 is refused from its header (no Pillow bomb warning,
    no 0.5 GB decode), naming its size and how to raise the budget."""
    bomb = _png_declaring(tmp_path / "bomb.png", 13000, 13000)
    with pytest.warns(Image.DecompressionBombWarning), Image.open(bomb) as img:  # what Pillow alone does
        assert bomb.stat().st_size < 1000 and img.size == (13000, 13000)
    with pytest.raises(
        ImageDecodeError,
        match=r"sample 'b' .*bomb.png.*13000x13000 \(169.0 MP\), above the pixel budget of 50 MP.*"
        r"PROBE_MAX_IMAGE_PIXELS=169000000",
    ):
        read_image(bomb, sample_id="b")


def test_pixel_budget_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setenv("PROBE_MAX_IMAGE_PIXELS", "4000")
    with pytest.raises(ImageDecodeError, match=r"64x64 .*above the pixel budget of 0.004 MP"):
        read_image(tmp_path / "a.png")
    monkeypatch.setenv("PROBE_MAX_IMAGE_PIXELS", "4096")
    assert read_image(tmp_path / "a.png").shape == (64, 64, 3)
    monkeypatch.setenv("PROBE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ConfigError, match="PROBE_MAX_IMAGE_PIXELS='lots' is not a positive number"):
        read_image(tmp_path / "a.png")


def test_jpeg_above_the_budget_is_decoded_at_reduced_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    assert read_image(tmp_path / "a.jpg").shape == (64, 96, 3)
    assert read_image(tmp_path / "a.jpg", max_pixels=64 * 96 // 4).shape == (32, 48, 3)  # DCT-scaled 1/2
    assert read_image(tmp_path / "a.jpg", max_pixels=64 * 96 // 5).shape == (16, 24, 3)  # 1/4 to fit
    with pytest.raises(ImageDecodeError, match="above the pixel budget .* even at 1/8 scale"):
        read_image(tmp_path / "a.jpg", max_pixels=10)


def test_a_raised_budget_enters_the_decode_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from probe.sources import open_source
    from tests.conftest import write_image_folder

    root = write_image_folder(tmp_path / "imgs", per_class=1)
    assert open_source(f"folder:{root}").decode_options() == {"rgba": "composite"}  # default: fingerprints unchanged
    monkeypatch.setenv("PROBE_MAX_IMAGE_PIXELS", "200000000")
    assert open_source(f"folder:{root}").decode_options() == {"rgba": "composite", "max_image_pixels": 200_000_000}
