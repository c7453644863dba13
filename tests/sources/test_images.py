"""Image decoding: channels, bit depth, alpha, palette and broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from probe.errors import ImageDecodeError
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
    with pytest.raises(ImageDecodeError, match="alpha channel.*--rgba composite"):
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
        ImageDecodeError, match=r"sample .x/bad.png. \(.*bad.png\): cannot decode image.*--on-error skip"
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
    with pytest.raises(ImageDecodeError, match="huge.png.*tile or downscale.*--on-error skip"):
        read_image(tmp_path / "huge.png", sample_id="huge")
