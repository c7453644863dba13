"""A backbone's exact preprocessing: resolution policy, interpolation and normalisation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from probe.errors import ConfigError

RESOLUTION_POLICIES: tuple[str, ...] = ("resize", "pad")
INTERPOLATIONS: tuple[str, ...] = ("bicubic", "bilinear", "nearest")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """How images become model inputs; every field enters the store fingerprint."""

    image_size: int  # side of the square model input, pixels
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel mean, after scaling to [0, 1]
    std: tuple[float, float, float] = IMAGENET_STD  # per-channel std, after scaling to [0, 1]
    interpolation: str = "bicubic"  # resampling filter used by both policies
    resolution: str = "resize"  # "resize": whole image to size x size; "pad": centre on a black canvas

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ConfigError(
                f"BackboneRequest(image_size={self.image_size}) is too small; use at least 8 pixels (e.g. 224)"
            )
        if self.resolution not in RESOLUTION_POLICIES:
            raise ConfigError(
                f"unknown resolution policy {self.resolution!r}; use one of {', '.join(RESOLUTION_POLICIES)}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")

    def replace(self, **changes: Any) -> PreprocessConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, used for fingerprints and store attributes."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


class Preprocessor:
    """Turn one decoded image into a normalised model input (picklable, for DataLoader workers).

    ``resize`` scales the whole image to ``size x size`` (no crop: nothing at the border is lost).
    ``pad`` keeps the aspect ratio: larger images are scaled down to fit, smaller ones keep their
    pixels, and the result is centred on a black canvas (as MedMNIST+ pads small images).
    """

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self._mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)

    def _resample(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if x.shape[-2:] == (h, w):
            return x
        mode = self.config.interpolation
        kwargs: dict[str, Any] = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
        return F.interpolate(x[None], size=(h, w), mode=mode, **kwargs)[0].clamp_(0.0, 1.0)

    def batch(self, images: np.ndarray) -> torch.Tensor:
        """Preprocess images of one size at once (the slices of a volume): equal to calling the
        preprocessor on each, with one resize of the whole stack (of one plane per image when the
        three channels are equal, as in grayscale slices).

        Args:
            images: (k, H, W, 3) uint8, or float32 in [0, 1].

        Returns:
            (k, 3, size, size) float32, normalised.
        """
        if self.config.resolution != "resize":
            return torch.stack([self(im) for im in images])
        s = self.config.image_size
        x = self._planes(images[..., :1] if _same_channels(images) else images, 1)
        if x.shape[-2:] != (s, s):
            mode = self.config.interpolation
            kwargs: dict[str, Any] = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
            x = F.interpolate(x, size=(s, s), mode=mode, **kwargs).clamp_(0.0, 1.0)
        return self._normalise(x, torch.empty((len(images), 3, s, s)))

    @staticmethod
    def _planes(images: np.ndarray, channel_axis: int) -> torch.Tensor:
        """Float32 planes in [0, 1] with channels moved after ``channel_axis`` (a view of writable input)."""
        x = torch.from_numpy(images if images.flags.writeable else images.copy()).movedim(-1, channel_axis)
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()

    def _normalise(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` into a contiguous ``out``; a single plane broadcasts over the three channels
        (the same float32 arithmetic as normalising three equal planes)."""
        torch.sub(x, self._mean, out=out)
        return out.div_(self._std)

    def mask(self, mask: np.ndarray) -> torch.Tensor:
        """Bring a label map to the model input's geometry by nearest neighbour (labels never blend).

        Args:
            mask: (H, W) uint8 class indices of the image's size (255 = ignore).

        Returns:
            (size, size) uint8; under the ``pad`` policy the canvas outside the image is 255 (ignore).
        """
        m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))[None, None].float()
        s = self.config.image_size
        h, w = mask.shape
        if self.config.resolution == "resize":
            nh, nw = s, s
        else:
            scale = min(1.0, s / max(h, w))
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        if (nh, nw) != (h, w):
            m = F.interpolate(m, size=(nh, nw), mode="nearest-exact")
        out = torch.full((s, s), 255, dtype=torch.uint8)
        top, left = (s - nh) // 2, (s - nw) // 2
        out[top : top + nh, left : left + nw] = m[0, 0].to(torch.uint8)
        return out

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """Preprocess one image.

        Args:
            image: (H, W, 3) uint8, or (H, W, 3) float32 in [0, 1].

        Returns:
            (3, size, size) float32, normalised.
        """
        x = self._planes(image[..., :1] if _same_channels(image) else image, 0)
        s = self.config.image_size
        if self.config.resolution == "resize":
            x = self._resample(x, s, s)
        else:
            h, w = x.shape[-2:]
            scale = min(1.0, s / max(h, w))
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            x = self._resample(x, nh, nw)
            canvas = torch.zeros(x.shape[0], s, s, dtype=torch.float32)
            top, left = (s - nh) // 2, (s - nw) // 2
            canvas[:, top : top + nh, left : left + nw] = x
            x = canvas
        return self._normalise(x, torch.empty(3, s, s))


def _same_channels(images: np.ndarray) -> bool:
    """Whether the three channels of (..., 3) images are equal (grayscale stored as RGB).

    Resampling treats every plane alike, so such images are resized once, as one plane, and the
    result broadcast over the channels: bit-identical to resizing each channel, at a third of the work.
    """
    if images.shape[-1] != 3:
        return False
    if images.strides[-1] == 0:  # one plane broadcast over the channels
        return True
    first = images[..., 0]
    return bool(np.array_equal(first, images[..., 1]) and np.array_equal(first, images[..., 2]))
