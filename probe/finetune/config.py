"""Settings of a fine-tuning run: mode, optimiser and schedule, augmentation, LoRA, early stopping."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from probe.errors import ConfigError

MODES: tuple[str, ...] = ("full", "lora", "bitfit", "lp-ft")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
NORM_MODES: tuple[str, ...] = ("frozen", "train")
SELECT_METRICS: tuple[str, ...] = ("balanced_accuracy", "accuracy", "neg_log_loss")


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations, conservative by default (small rotations, crops that keep most of the image).

    The left-right flip is on by default; set ``hflip=0`` (``--hflip 0``) where laterality carries
    meaning (chest X-rays, for instance). Applied to the decoded image before the backbone's
    preprocessing; evaluation never augments.
    """

    enabled: bool = True  # False: train on the preprocessed images as they are
    hflip: float = 0.5  # probability of a left-right flip
    vflip: float = 0.0  # probability of an up-down flip (off: most modalities have a fixed up)
    rotate_degrees: float = 10.0  # rotation drawn uniformly in [-r, r] degrees, black fill
    crop_scale: tuple[float, float] = (0.85, 1.0)  # area fraction range of the random resized crop
    crop_ratio: tuple[float, float] = (0.9, 1.1)  # aspect-ratio range of the random resized crop

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"--{name} {p} must be a probability in [0, 1]")
        if not 0.0 <= self.rotate_degrees <= 180.0:
            raise ConfigError(f"AugmentConfig(rotate_degrees={self.rotate_degrees}) must lie in [0, 180] degrees")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(
                f"AugmentConfig(crop_scale={self.crop_scale}) must satisfy 0 < low <= high <= 1, e.g. 0.85,1.0"
            )
        lo, hi = self.crop_ratio
        if not 0.0 < lo <= hi:
            raise ConfigError(f"augmentation crop_ratio {self.crop_ratio} must satisfy 0 < low <= high")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, recorded in every row's params."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LoraSettings:
    """Low-rank adapters (peft) for ``--mode lora``."""

    rank: int = 8  # adapter rank r
    alpha: int = 16  # scaling numerator: updates are scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter input
    targets: tuple[str, ...] | None = None  # module names or suffixes; None: discovered (see model.py)

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"LoraSettings(rank={self.rank}) must be a positive integer such as 8 or 16")
        if self.alpha <= 0:
            raise ConfigError(f"LoraSettings(alpha={self.alpha}) must be positive (commonly 2 x rank)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoraSettings(dropout={self.dropout}) must lie in [0, 1)")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning recipe; every field is recorded in the result rows and the checkpoint key."""

    mode: str = "full"  # "full", "lora", "bitfit" (biases + head) or "lp-ft" (linear probe, then full)
    pooling: str | None = None  # backbone pooling fed to the linear head (None: its first default)
    epochs: int = 20  # training epochs (an upper bound when early stopping is on)
    min_steps: int = 50  # n-shot runs train at least this many optimiser steps (tiny supports)
    batch_size: int = 32  # samples per forward pass (a multi-view sample costs one image per present view)
    grad_accum: int = 1  # forward passes per optimiser step
    lr: float | None = None  # peak backbone lr (None: 1e-4 for full/lp-ft, 1e-3 for the few LoRA/BitFit params)
    head_lr: float = 1e-3  # peak learning rate of the new linear head
    weight_decay: float = 0.05  # AdamW decoupled weight decay (never on biases, norms and tokens)
    warmup_frac: float = 0.1  # share of the steps with linear warm-up, then cosine decay to 0
    layer_decay: float | None = None  # layer-wise lr decay factor in (0, 1] (None: off)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    class_balanced: bool = False  # weight the loss by inverse class frequency of the draw
    norm: str = "frozen"  # BatchNorm statistics: "frozen" (eval mode) or "train" (batch statistics)
    patience: int = 5  # full data: epochs without a better val score before stopping (0: never stop)
    select_metric: str = "balanced_accuracy"  # full data: val metric for early stopping (multi-label: macro-AUROC)
    precision: str = "auto"  # autocast: "auto" (bf16 on CUDA, fp32 on CPU), "fp32", "bf16"
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    num_workers: int | None = None  # DataLoader workers (None: as extraction chooses)
    image_size: int | None = None  # model input side (None: the backbone's own)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    progress: bool = True  # progress bar on stderr

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"FinetuneConfig(mode={self.mode!r}) is unknown; use one of {', '.join(MODES)}")
        positive = {"epochs": self.epochs, "batch-size": self.batch_size, "grad-accum": self.grad_accum}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{name} {value} must be a positive integer")
        if self.min_steps < 0 or self.patience < 0:
            raise ConfigError(
                f"FinetuneConfig(min_steps={self.min_steps}) and FinetuneConfig(patience={self.patience}) must be >= 0"
            )
        for name, rate in {"lr": self.backbone_lr, "head-lr": self.head_lr}.items():
            if not rate > 0:
                raise ConfigError(f"--{name} {rate} must be positive, e.g. 1e-4")
        if self.weight_decay < 0:
            raise ConfigError(f"FinetuneConfig(weight_decay={self.weight_decay}) must be >= 0")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ConfigError(f"FinetuneConfig(warmup_frac={self.warmup_frac}) must lie in [0, 1)")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"FinetuneConfig(layer_decay={self.layer_decay}) must lie in (0, 1], e.g. 0.75")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"FinetuneConfig(label_smoothing={self.label_smoothing}) must lie in [0, 1)")
        if self.norm not in NORM_MODES:
            raise ConfigError(f"FinetuneConfig(norm={self.norm!r}) is unknown; use one of {', '.join(NORM_MODES)}")
        if self.select_metric not in SELECT_METRICS:
            raise ConfigError(
                f"FinetuneConfig(select_metric={self.select_metric!r}) is unknown; use one of "
                f"{', '.join(SELECT_METRICS)}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"FinetuneConfig(precision={self.precision!r}) is unknown; use one of {', '.join(PRECISIONS)}"
            )

    @property
    def backbone_lr(self) -> float:
        """Peak learning rate of the trained backbone parameters (the mode's default when ``lr`` is None)."""
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.mode in ("lora", "bitfit") else 1e-4

    @property
    def head_name(self) -> str:
        """The ``head`` of this mode's result rows."""
        return f"finetune-{self.mode}"

    def recipe(self) -> dict[str, Any]:
        """The settings that change the trained weights (checkpoint key and row params)."""
        d = dataclasses.asdict(self)
        d["lr"] = self.backbone_lr
        for key in ("device", "num_workers", "progress"):
            d.pop(key)
        if self.mode != "lora":
            d.pop("lora")
        else:
            d["lora"]["targets"] = None if self.lora.targets is None else list(self.lora.targets)
        d["augment"] = self.augment.to_dict()
        return d
