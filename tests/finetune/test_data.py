"""Seeded augmentation: reproducible per (seed, epoch, row), conservative, and off for evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from probe.backbones import PreprocessConfig, Preprocessor
from probe.finetune import AugmentConfig
from probe.finetune.data import SourceImages, augment_image, epoch_order, seeded_generator
from probe.sources import open_source
from tests.conftest import write_image_folder


def _images(tmp_path: Path, augment: AugmentConfig | None) -> SourceImages:
    src = open_source(f"folder:{write_image_folder(tmp_path / 'imgs', per_class=3)}")
    return SourceImages(
        src, np.arange(len(src)), Preprocessor(PreprocessConfig(image_size=32)), augment=augment, seed=7
    )


def test_augmentation_depends_only_on_seed_epoch_and_row(tmp_path: Path) -> None:
    data = _images(tmp_path, AugmentConfig())
    data.set_epoch(2)
    a = data[3][0]
    data.set_epoch(5)
    b = data[3][0]
    data.set_epoch(2)
    assert torch.equal(data[3][0], a) and not torch.equal(a, b)
    assert a.shape == (1, 3, 32, 32) and data[3][2].tolist() == [True]


def test_evaluation_is_plain_preprocessing(tmp_path: Path) -> None:
    data = _images(tmp_path, None)
    off = _images(tmp_path, AugmentConfig(enabled=False))
    pre = Preprocessor(PreprocessConfig(image_size=32))
    expected = pre(data.source.load_image(1))
    assert torch.equal(data[1][0][0], expected) and torch.equal(off[1][0][0], expected)
    assert data[1][1].dtype == torch.int64 and int(data[1][1]) == int(data.source.labels[1])


def test_identity_settings_leave_the_image_unchanged() -> None:
    x = torch.rand(3, 20, 24)
    cfg = AugmentConfig(hflip=0.0, rotate_degrees=0.0, crop_scale=(1.0, 1.0), crop_ratio=(24 / 20, 24 / 20))
    assert torch.allclose(augment_image(x, cfg, seeded_generator(0)), x, atol=1e-6)
    flipped = augment_image(
        x,
        AugmentConfig(hflip=1.0, rotate_degrees=0.0, crop_scale=(1.0, 1.0), crop_ratio=(1.2, 1.2)),
        seeded_generator(0),
    )
    assert torch.allclose(flipped, x.flip(-1), atol=1e-6)


def test_rotation_fills_black_and_stays_in_range() -> None:
    x = torch.ones(3, 32, 32)
    out = augment_image(x, AugmentConfig(hflip=0.0, rotate_degrees=30.0, crop_scale=(1.0, 1.0)), seeded_generator(3))
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out[:, 0, 0].max() < 0.5 or out[:, -1, -1].max() < 0.5  # a rotated corner is filled with black


def test_epoch_order_is_a_seeded_permutation() -> None:
    a = epoch_order(50, seed=1, epoch=0)
    assert sorted(a) == list(range(50))
    assert a == epoch_order(50, seed=1, epoch=0) and a != epoch_order(50, seed=1, epoch=1)
