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
