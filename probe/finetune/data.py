"""Images of a source as training and evaluation batches, with seeded, resumable augmentation.

Every random choice is drawn from a generator seeded by (seed, epoch, sample row), never from a
global RNG, so an epoch's batches and augmentations are the same whether a run was interrupted or
not, and whatever the number of DataLoader workers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import InterpolationMode

from probe.backbones import Preprocessor
from probe.finetune.config import AugmentConfig
from probe.sources import Source


def seeded_generator(*parts: int) -> torch.Generator:
    """A torch generator keyed by integers (order matters)."""
    key = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & ((1 << 63) - 1))


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def augment_image(image: torch.Tensor, config: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop (back to the input size), flips and a small rotation with black fill.

    Args:
        image: (3, H, W) float32 in [0, 1].
        config: augmentation settings.
        gen: the sample's generator.

    Returns:
        (3, H, W) float32 in [0, 1].
    """
    _, h, w = image.shape
    area = h * w
    top, left, ch, cw = 0, 0, h, w
    for _ in range(10):  # rejection sampling of a crop that fits, as RandomResizedCrop does
        target = area * _uniform(gen, *config.crop_scale)
        ratio = math.exp(_uniform(gen, math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])))
        cw_try, ch_try = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw_try <= w and 0 < ch_try <= h:
            ch, cw = ch_try, cw_try
            top = int(torch.randint(0, h - ch + 1, (), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (), generator=gen))
            break
    out = TF.resized_crop(image, top, left, ch, cw, [h, w], interpolation=InterpolationMode.BILINEAR, antialias=True)
    if float(torch.rand((), generator=gen)) < config.hflip:
        out = TF.horizontal_flip(out)
    if float(torch.rand((), generator=gen)) < config.vflip:
        out = TF.vertical_flip(out)
    if config.rotate_degrees > 0:
        angle = _uniform(gen, -config.rotate_degrees, config.rotate_degrees)
        out = TF.rotate(out, angle, interpolation=InterpolationMode.BILINEAR, fill=[0.0])
    return out.clamp_(0.0, 1.0)


class SourceImages(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Rows of a source as (views, target, present) triples.

    Every sample is a stack of views: one for plain images, the slices of a volume or the modalities
    of a study for multi-view sources (absent views are zeros with ``present`` False). All views of a
    sample share one augmentation draw, so the slices of a volume stay aligned.

    Args:
        source: the data source.
        rows: (m,) source row indices.
        preprocess: the backbone's preprocessing.
        augment: training augmentation, or None for evaluation.
        seed: run seed (augmentation draws depend on seed, epoch and row).
    """

    def __init__(
        self, source: Source, rows: np.ndarray, preprocess: Preprocessor, *, augment: AugmentConfig | None, seed: int
    ) -> None:
        self.source = source
        self.rows = np.asarray(rows, dtype=np.int64)
        self.preprocess = preprocess
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self.epoch = 0
        self.present = source.view_mask() if source.views is not None else None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws are used."""
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.rows.size)

    def _input(self, image: np.ndarray, row: int) -> torch.Tensor:
        if self.augment is None:
            return self.preprocess(image)
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        x = augment_image(x, self.augment, seeded_generator(self.seed, self.epoch, row))
        return self.preprocess(x.permute(1, 2, 0).contiguous().numpy())

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(V, 3, S, S) float32 inputs, the target ((), int64 class or (C,) float32 1/0/-1), (V,) bool present.

        ``item`` is a position, or (position, epoch) from an :class:`EpochSampler`: persistent worker
        processes hold their own copy of the dataset, so the epoch travels with each index.
        """
        if isinstance(item, tuple):
            i, self.epoch = int(item[0]), int(item[1])
        else:
            i = int(item)
        row = int(self.rows[i])
        label = self.source.labels[row]
        target = torch.as_tensor(label, dtype=torch.float32 if np.ndim(label) else torch.int64)
        if self.present is None:
            return self._input(self.source.load_image(row), row)[None], target, torch.ones(1, dtype=torch.bool)
        present = torch.from_numpy(self.present[row].copy())
        views = [
            self._input(self.source.load_view(row, v), row) if present[v] else None for v in range(present.numel())
        ]
        side = self.preprocess.config.image_size
        stack = torch.stack([v if v is not None else torch.zeros(3, side, side) for v in views])
        return stack, target, present


def epoch_order(n: int, *, seed: int, epoch: int) -> list[int]:
    """The seeded sample order of one epoch (positions 0..n-1)."""
    return torch.randperm(n, generator=seeded_generator(seed, epoch, -1)).tolist()


class EpochSampler(Sampler[tuple[int, int]]):
    """The seeded order of the current epoch as (position, epoch) pairs; :meth:`set_epoch` moves it on.

    One loader with persistent workers serves every epoch: the sampler lives in the main process,
    so a new epoch needs no new worker processes.
    """

    def __init__(self, n: int, *, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(i, self.epoch) for i in epoch_order(self.n, seed=self.seed, epoch=self.epoch)])


def make_loader(
    data: SourceImages,
    *,
    batch_size: int,
    order: list[int] | Sampler[tuple[int, int]] | None,
    workers: int,
    pin: bool,
    persistent: bool = False,
) -> DataLoader[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches in ``order`` (None: dataset order; an :class:`EpochSampler`: that epoch's order), without
    dropping the last partial batch; ``persistent`` keeps the worker processes between passes."""
    sampler = order if order is not None else list(range(len(data)))
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,  # type: ignore[arg-type]
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=persistent and workers > 0,
    )
