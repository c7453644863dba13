"""DICOM pixels to a network-ready image: Modality LUT, then VOI (LUT or window), then MONOCHROME1 inversion.

Grayscale images become (H, W, 3) float32 in [0, 1] and are never quantised to 8 bits, so 12- and
16-bit data keep their precision. Colour images (RGB; YBR is converted to RGB by pydicom; PALETTE
COLOR is expanded) are passed through: 8-bit as uint8, deeper ones as float32 over their full range.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.errors import ConfigError, ImageDecodeError
from probe.sources.images import rescale_to_unit, to_three_channels

#: Named CT windows as (centre, width) in Hounsfield units (the usual radiology reading settings).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
}
FRAME_POLICIES: tuple[str, ...] = ("middle", "all")
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom", ".dic")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422")


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


@dataclass(frozen=True)
class DicomOptions:
    """How DICOM pixels become an image; every field enters the store fingerprint."""

    window: str = "auto"  # "auto" (file VOI LUT, else file window, else min-max), "minmax", a preset, or "C,W"
    frames: str = "middle"  # multi-frame files: "middle" (one row, the middle frame) or "all" (one row per frame)

    def __post_init__(self) -> None:
        if self.frames not in FRAME_POLICIES:
            raise ConfigError(f"DICOM frames={self.frames!r} is unknown; use frames=middle or frames=all")
        self.window_centre_width()  # validates

    @classmethod
    def from_options(cls, options: dict[str, str]) -> DicomOptions:
        """Build from spec options (``window``, ``frames``), normalising the window's spelling."""
        window = options.get("window", "auto").strip().lower()
        parts = window.split(",")
        if len(parts) == 2:
            with contextlib.suppress(ValueError):  # a bad value is reported in the user's spelling
                window = f"{_number(parts[0]):g},{_number(parts[1]):g}"
        else:
            window = window.replace("-", "_")  # soft-tissue → soft_tissue
        return cls(window=window, frames=options.get("frames", "middle").strip().lower())

    def window_centre_width(self) -> tuple[float, float] | None:
        """The fixed (centre, width) asked for, or None for ``auto`` / ``minmax``.

        Raises:
            ConfigError: unknown preset, or a ``C,W`` window that is not two numbers with W >= 1.
        """
        if self.window in ("auto", "minmax"):
            return None
        if self.window in WINDOW_PRESETS:
            return WINDOW_PRESETS[self.window]
        parts = self.window.split(",")
        try:
            centre, width = (_number(p) for p in parts) if len(parts) == 2 else (math.nan, -1.0)
        except ValueError:
            centre, width = math.nan, -1.0
        if math.isnan(centre) or width < 1:
            raise ConfigError(
                f"DICOM window={self.window!r} is unknown; use auto, minmax, a preset "
                f"({', '.join(WINDOW_PRESETS)}) or CENTRE,WIDTH with WIDTH >= 1, e.g. window=40,400"
            )
        return centre, width

    def to_options(self) -> dict[str, str]:
        """The spec options that differ from the defaults (for the canonical specification)."""
        return {k: v for k, v in (("window", self.window), ("frames", self.frames)) if v != getattr(DicomOptions, k)}


def is_dicom_path(path: str | os.PathLike[str]) -> bool:
    """A ``.dcm``/``.dicom``/``.dic`` file, or an extension-less file with the ``DICM`` preamble magic."""
    p = os.fspath(path)
    ext = os.path.splitext(p)[1].lower()
    if ext in DICOM_EXTENSIONS:
        return True
    if ext:
        return False
    try:
        with open(p, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _frame_item(ds: Any, frame: int, sequence: str) -> Any:
    """The functional-group item ``sequence`` for one frame (per-frame first, then shared), or None."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq and i < len(seq) and seq[i].get(sequence):
            return seq[i].get(sequence)[0]
    return None


def _first(value: Any) -> float:
    """First value of a possibly multi-valued DICOM number."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def modality_values(arr: np.ndarray, ds: Any, frame: int) -> np.ndarray:
    """Stored values → modality values (e.g. Hounsfield units): Rescale Slope/Intercept or Modality LUT.

    Returns:
        float64 array of the input's shape.
    """
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    src = (
        ds
        if "RescaleSlope" in ds or "RescaleIntercept" in ds
        else _frame_item(ds, frame, "PixelValueTransformationSequence")
    )
    slope = _first(src.get("RescaleSlope", 1.0)) if src is not None else 1.0
    intercept = _first(src.get("RescaleIntercept", 0.0)) if src is not None else 0.0
    return arr.astype(np.float64) * slope + intercept


def linear_window(x: np.ndarray, centre: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Map values through a VOI window to [0, 1] (DICOM PS3.3 C.11.2.1.2 formulas, output range [0, 1]).

    Args:
        x: modality values, any shape.
        centre: window centre.
        width: window width (>= 1 for LINEAR, > 0 otherwise).
        function: VOI LUT Function: ``LINEAR``, ``LINEAR_EXACT`` or ``SIGMOID``.

    Returns:
        float32 array of ``x``'s shape.
    """
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - centre) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        return np.clip((x - centre) / width + 0.5, 0.0, 1.0).astype(np.float32)
    # LINEAR: below c - 0.5 - (w-1)/2 → 0, above c - 0.5 + (w-1)/2 → 1, linear in between
    if width <= 1.0:
        return (x > centre - 0.5).astype(np.float32)
    return np.clip((x - (centre - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0).astype(np.float32)


def _lut_entries(item: Any, ds: Any) -> np.ndarray:
    n = int(item.LUTDescriptor[0]) or 65536
    data = item.LUTData
    if isinstance(data, (bytes, bytearray)):
        little = getattr(ds, "original_encoding", (None, True))[1] is not False
        return np.array(struct.unpack_from(f"{'<' if little else '>'}{n}H", data), dtype=np.float64)
    values = [data] if isinstance(data, int) else list(data)
    return np.asarray(values[:n], dtype=np.float64)


def voi_lut(x: np.ndarray, ds: Any) -> np.ndarray:
    """Apply the file's first VOI LUT: values below/above the table take its first/last entry.

    Returns:
        float32 in [0, 1]: LUT output divided by ``2**bits - 1`` (bits from the LUT Descriptor).
    """
    item = ds.VOILUTSequence[0]
    first_map, bits = int(item.LUTDescriptor[1]), int(item.LUTDescriptor[2])
    lut = _lut_entries(item, ds)
    idx = np.clip(np.rint(x).astype(np.int64) - first_map, 0, lut.size - 1)
    return (lut[idx] / float(2**bits - 1)).astype(np.float32)


def _file_window(ds: Any, frame: int) -> tuple[float, float, str] | None:
    src = ds if "WindowCenter" in ds and "WindowWidth" in ds else _frame_item(ds, frame, "FrameVOILUTSequence")
    if src is None or "WindowCenter" not in src or "WindowWidth" not in src:
        return None
    width = _first(src.WindowWidth)
    if width <= 0:
        return None
    return _first(src.WindowCenter), width, str(src.get("VOILUTFunction", "LINEAR")).upper()


def grey_to_unit(x: np.ndarray, ds: Any, frame: int, options: DicomOptions) -> np.ndarray:
    """VOI step for modality values: the asked window, else the file's VOI LUT or window, else min-max.

    Returns:
        float32 in [0, 1], shape of ``x``; MONOCHROME1 is inverted afterwards by the caller.
    """
    fixed = options.window_centre_width()
    if fixed is not None:
        return linear_window(x, *fixed)
    if options.window == "auto":
        if ds.get("VOILUTSequence"):
            return voi_lut(x, ds)
        found = _file_window(ds, frame)
        if found is not None:
            centre, width, function = found
            if function == "LINEAR" and width < 1:
                function = "LINEAR_EXACT"
            return linear_window(x, centre, width, function)
    return rescale_to_unit(x)


def _colour(arr: np.ndarray, ds: Any) -> np.ndarray:
    if str(ds.PhotometricInterpretation) == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = np.asarray(apply_color_lut(arr, ds))
        bits = 8 if arr.dtype == np.uint8 else 16
    else:
        bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return (arr.astype(np.float64) / float(2**bits - 1)).clip(0.0, 1.0).astype(np.float32)


def frame_count(ds: Any) -> int:
    """Number of frames of a dataset (1 when the attribute is absent or empty)."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def decode_dataset(ds: Any, options: DicomOptions, *, frame: int | None = None) -> np.ndarray:
    """Decode one frame of a read dataset (``frame=None``: the middle frame of a multi-frame file).

    Returns:
        (H, W, 3) float32 in [0, 1] for grayscale and deep colour, (H, W, 3) uint8 for 8-bit colour.
    """
    from pydicom.pixels import pixel_array

    n = frame_count(ds)
    index = n // 2 if frame is None else frame
    if not 0 <= index < n:
        raise ValueError(f"frame {index} does not exist; the file has {n} frame(s)")
    arr = np.asarray(pixel_array(ds, index=index if n > 1 else None))
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric in _COLOUR or photometric == "PALETTE COLOR" or arr.ndim == 3:
        return _colour(arr, ds)
    unit = grey_to_unit(modality_values(arr, ds, index), ds, index, options)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit  # low values are bright in MONOCHROME1; inverted after the VOI step
    return to_three_channels(unit.astype(np.float32))


def read_dicom(
    path: str | os.PathLike[str], options: DicomOptions | None = None, *, frame: int | None = None, sample_id: str = ""
) -> np.ndarray:
    """Read and decode a DICOM file (see :func:`decode_dataset`).

    Raises:
        ImageDecodeError: missing, non-DICOM, pixel-less or undecodable file; the message names id and path.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    where = f"sample {sample_id!r} ({path})" if sample_id else str(path)
    try:
        ds = pydicom.dcmread(path)
    except FileNotFoundError:
        raise ImageDecodeError(f"{where}: file not found; fix the path or pass ExtractConfig(on_error=skip)") from None
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise ImageDecodeError(
            f"{where}: not a readable DICOM file ({exc}); replace it or pass ExtractConfig(on_error=skip)"
        ) from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageDecodeError(f"{where}: DICOM file has no pixel data (a report or structure set?); remove it")
    try:
        return decode_dataset(ds, options or DicomOptions(), frame=frame)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, KeyError, TypeError) as exc:
        raise ImageDecodeError(
            f"{where}: cannot decode DICOM pixels ({exc}); for compressed transfer syntaxes install a decoder "
            "(pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg), or pass ExtractConfig(on_error=skip)"
        ) from None
