"""Resolution policies and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.backbones import PreprocessConfig, Preprocessor
from probe.errors import ConfigError


def test_resize_fills_the_canvas() -> None:
    pre = Preprocessor(PreprocessConfig(image_size=32, mean=(0, 0, 0), std=(1, 1, 1)))
    out = pre(np.full((10, 20, 3), 255, np.uint8))
    assert out.shape == (3, 32, 32)
    torch.testing.assert_close(out, torch.ones(3, 32, 32))


def test_pad_centres_without_upscaling() -> None:
    pre = Preprocessor(PreprocessConfig(image_size=32, mean=(0, 0, 0), std=(1, 1, 1), resolution="pad"))
    out = pre(np.full((10, 20, 3), 255, np.uint8))
    assert out.shape == (3, 32, 32)
    assert out[:, 11:21, 6:26].min() == 1.0 and out.sum() == 3 * 10 * 20  # only the image's pixels are lit


def test_pad_downscales_large_images_keeping_aspect() -> None:
    pre = Preprocessor(PreprocessConfig(image_size=16, mean=(0, 0, 0), std=(1, 1, 1), resolution="pad"))
    out = pre(np.full((64, 32, 3), 255, np.uint8))
    assert (out[0].sum(0) > 0).sum() == 8 and (out[0].sum(1) > 0).sum() == 16


def test_float_input_and_normalisation() -> None:
    pre = Preprocessor(PreprocessConfig(image_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    out = pre(np.ones((8, 8, 3), np.float32))
    torch.testing.assert_close(out, torch.ones(3, 8, 8))


def test_bad_config_values() -> None:
    with pytest.raises(ConfigError, match="unknown resolution policy 'crop'"):
        PreprocessConfig(image_size=32, resolution="crop")
    with pytest.raises(ConfigError, match=r"BackboneRequest\(image_size=2\) is too small"):
        PreprocessConfig(image_size=2)


def _three_plane_reference(pre: Preprocessor, images: np.ndarray) -> torch.Tensor:
    """The preprocessing of (k, H, W, 3) images with every channel resized on its own (no one-plane shortcut)."""
    x = torch.from_numpy(images.copy()).permute(0, 3, 1, 2)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    s = pre.config.image_size
    mode = pre.config.interpolation
    kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
    if x.shape[-2:] != (s, s):
        x = torch.nn.functional.interpolate(x, size=(s, s), mode=mode, **kwargs).clamp_(0.0, 1.0)
    return (x - pre._mean) / pre._std


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize("side", [12, 20, 32])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_grayscale_as_one_plane_is_bit_identical_to_three(interpolation: str, side: int, dtype: str) -> None:
    """Equal channels are resized once and broadcast: the same bits as resizing each channel (down, same, up)."""
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (5, 20, 20), dtype=np.uint8)
    images = np.repeat(gray[..., None], 3, axis=-1)
    if dtype == "float32":
        images = images.astype(np.float32) / 255
    pre = Preprocessor(PreprocessConfig(image_size=side, interpolation=interpolation))
    ref = _three_plane_reference(pre, images)
    out = pre.batch(images)
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    broadcast = np.broadcast_to(images[..., :1], images.shape)  # stride-0 channels
    torch.testing.assert_close(pre.batch(broadcast), ref, rtol=0, atol=0)
    for k in range(len(images)):
        torch.testing.assert_close(pre(images[k]), ref[k], rtol=0, atol=0)
    colour = images.copy()
    colour[..., 1] = colour[..., 1][:, ::-1]  # channels differ: the three-plane path
    torch.testing.assert_close(pre.batch(colour), _three_plane_reference(pre, colour), rtol=0, atol=0)
