"""Explicit image decoding: every pixel format becomes 3-channel uint8 or [0, 1] float32.

Rules: grayscale is repeated to 3 channels; 16-bit and float images are min-max rescaled per image
to [0, 1] float (never clipped at 255); palette images are expanded; alpha is composited on black
(``rgba="composite"``) or rejected (``rgba="reject"``); other modes (CMYK, YCbCr, ...) go to RGB.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from probe.errors import ConfigError, ImageDecodeError

if TYPE_CHECKING:
    from probe.sources._dicom_pixels import DicomOptions

RgbaPolicy = Literal["composite", "reject"]
RGBA_POLICIES: tuple[str, ...] = ("composite", "reject")
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm",
)  # fmt: skip


def to_three_channels(array: np.ndarray) -> np.ndarray:
    """Return (H, W, 3) from (H, W), (H, W, 1) or (H, W, 3) arrays, keeping the dtype."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"expected (H, W), (H, W, 1) or (H, W, 3), got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)


def rescale_to_unit(array: np.ndarray) -> np.ndarray:
    """Min-max rescale any numeric array to float32 in [0, 1]; a constant image becomes zeros."""
    a = array.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, 0.0).astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


def _composite(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    return np.rint(rgba[:, :, :3].astype(np.float32) * alpha).astype(np.uint8)


def pil_to_array(img: Image.Image, *, rgba: RgbaPolicy = "composite", where: str = "image") -> np.ndarray:
    """Convert a PIL image to (H, W, 3) uint8 or (H, W, 3) float32 in [0, 1].

    Args:
        img: an opened PIL image.
        rgba: what to do with an alpha channel.
        where: sample id and path, used in error messages.
    """
    if rgba not in RGBA_POLICIES:
        raise ConfigError(f"unknown RGBA policy {rgba!r}; use one of {', '.join(RGBA_POLICIES)}")
    img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return to_three_channels(rescale_to_unit(np.asarray(img)))
    if mode == "1":
        img, mode = img.convert("L"), "L"
    if mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        if rgba == "reject":
            raise ImageDecodeError(
                f"{where}: image has an alpha channel (mode {mode}); pass --rgba composite to "
                "composite it on black, or remove the alpha channel"
            )
        return _composite(np.asarray(img.convert("RGBA")))
    if mode == "L":
        return to_three_channels(np.array(img))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.array(img)  # a writable copy (PIL hands out read-only buffers)


def read_image(
    path: str | os.PathLike[str],
    *,
    rgba: RgbaPolicy = "composite",
    sample_id: str = "",
    dicom: DicomOptions | None = None,
) -> np.ndarray:
    """Open and decode an image file (DICOM files go to :func:`probe.sources._dicom_pixels.read_dicom`).

    Returns:
        (H, W, 3) uint8, or (H, W, 3) float32 in [0, 1] for 16-bit / float images.

    Raises:
        ImageDecodeError: missing, unreadable or corrupt file; the message names id and path.
    """
    from probe.sources._dicom_pixels import is_dicom_path, read_dicom

    if is_dicom_path(path):
        return read_dicom(path, dicom, sample_id=sample_id)
    where = f"sample {sample_id!r} ({path})" if sample_id else str(path)
    try:
        with Image.open(path) as img:
            img.load()
            return pil_to_array(img, rgba=rgba, where=where)
    except FileNotFoundError:
        raise ImageDecodeError(f"{where}: file not found; fix the path or pass --on-error skip") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{where}: {exc}; tile or downscale the image first, or pass --on-error skip") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(
            f"{where}: cannot decode image ({exc}); replace the file or pass --on-error skip"
        ) from None
