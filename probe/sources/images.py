"""Explicit image decoding: every pixel format becomes 3-channel uint8 or [0, 1] float32.

Rules: grayscale is repeated to 3 channels; 16-bit and float images are min-max rescaled per image
to [0, 1] float (never clipped at 255); palette images are expanded; alpha is composited on black
(``rgba="composite"``) or rejected (``rgba="reject"``); other modes (CMYK, YCbCr, ...) go to RGB.

Pixel budget: an image whose header declares more than :func:`max_image_pixels` pixels (default
50 MP; environment variable ``PROBE_MAX_IMAGE_PIXELS``) is decoded at a reduced size where the format
allows it (JPEG's DCT scaling, 1/2 to 1/8 per side) and refused otherwise, before any pixel is
decoded, so a small file declaring a huge canvas cannot exhaust memory. Pillow's own
decompression-bomb warning is replaced by this check.
"""

from __future__ import annotations

import math
import os
import warnings
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


#: Default pixel budget per image (50 megapixels).
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
#: Environment variable that sets the pixel budget (a number of pixels).
MAX_PIXELS_ENV = "PROBE_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel budget: ``PROBE_MAX_IMAGE_PIXELS`` when set, else :data:`DEFAULT_MAX_IMAGE_PIXELS`.

    Raises:
        ConfigError: the variable is not a positive whole number.
    """
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(
            f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r} is not a positive number of pixels; "
            f"set it to e.g. 200000000 (default {DEFAULT_MAX_IMAGE_PIXELS})"
        )
    return int(text)


def pixel_budget_options() -> dict[str, int]:
    """Decode options of a non-default pixel budget (it can change pixels, so it enters fingerprints)."""
    budget = max_image_pixels()
    return {} if budget == DEFAULT_MAX_IMAGE_PIXELS else {"max_image_pixels": budget}


def _within_budget(img: Image.Image, budget: int, where: str) -> None:
    """Ask a JPEG for a reduced-size decode that fits ``budget``; refuse any other image above it."""
    w, h = img.size
    if w * h <= budget:
        return
    if img.format == "JPEG":
        scale = min(8, 2 ** math.ceil(math.log2(math.sqrt(w * h / budget))))
        img.draft(img.mode, (max(1, w // scale), max(1, h // scale)))
        if img.size[0] * img.size[1] <= budget:
            return
    raise ImageDecodeError(
        f"{where}: image is {w}x{h} ({w * h / 1e6:.1f} MP), above the pixel budget of {budget / 1e6:g} MP"
        f"{' even at 1/8 scale' if img.format == 'JPEG' else ''}; downscale the file, raise the budget with "
        f"the environment variable {MAX_PIXELS_ENV}={w * h}, or skip it with ExtractConfig(on_error='skip')"
    )


def _reduce_fast(img: Image.Image, side: int) -> Image.Image:
    """A JPEG decoded at reduced size: DCT scaling (``draft``, up to 1/8 per side) and then ``Image.reduce``
    by the largest whole factor that keeps the short side at least ``side`` pixels.

    Call before ``load()``; other formats come back unchanged (loaded).
    """
    if img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK", "YCbCr"):
        img.draft(img.mode, (side, side))  # keeps both sides >= side
    img.load()
    factor = min(img.size) // side
    return img.reduce(factor) if factor >= 2 and img.format == "JPEG" else img


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
    a = array.astype(np.float32)  # one float32 copy (never float64), rescaled in place
    if array.dtype.kind in "fc" and not np.isfinite(a).all():
        a[~np.isfinite(a)] = 0.0
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros_like(a)
    a -= lo  # in place, the same float32 arithmetic as (a - lo) / (hi - lo)
    a /= hi - lo
    return a


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
                f"{where}: image has an alpha channel (mode {mode}); pass SourceRequest(rgba=composite) to "
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
    max_pixels: int | None = None,
    fast_side: int | None = None,
) -> np.ndarray:
    """Open and decode an image file (DICOM files go to :func:`probe.sources._dicom_pixels.read_dicom`).

    Args:
        path: the image file.
        rgba: alpha-channel policy.
        sample_id: the sample's id, named in error messages.
        dicom: window and frame policy of DICOM files.
        max_pixels: pixel budget (None: :func:`max_image_pixels`); a JPEG above it is decoded at a
            reduced size, any other image above it is refused.
        fast_side: the fast path (None: exact): a JPEG larger than this is decoded at reduced size (DCT
            scaling, then a whole-factor box reduction), keeping its short side at least ``fast_side``.

    Returns:
        (H, W, 3) uint8, or (H, W, 3) float32 in [0, 1] for 16-bit / float images.

    Raises:
        ImageDecodeError: missing, unreadable or corrupt file, or an image above the pixel budget; the
            message names id and path.
    """
    from probe.sources._dicom_pixels import is_dicom_path, read_dicom

    if is_dicom_path(path):
        return read_dicom(path, dicom, sample_id=sample_id)
    where = f"sample {sample_id!r} ({path})" if sample_id else str(path)
    budget = max_pixels if max_pixels is not None else max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the budget below decides
            img_cm = Image.open(path)
        with img_cm as img:
            _within_budget(img, budget, where)
            if fast_side is not None:
                return pil_to_array(_reduce_fast(img, fast_side), rgba=rgba, where=where)
            img.load()
            return pil_to_array(img, rgba=rgba, where=where)
    except FileNotFoundError:
        raise ImageDecodeError(f"{where}: file not found; fix the path or pass ExtractConfig(on_error=skip)") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            f"{where}: {exc}; tile or downscale the image first, or pass ExtractConfig(on_error=skip)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(
            f"{where}: cannot decode image ({exc}); replace the file or pass ExtractConfig(on_error=skip)"
        ) from None
