"""The one device, precision, autocast and data-loader worker policy shared by every stage that runs torch.

Extraction, fine-tuning and the benchmarks resolve ``--device`` / ``--precision`` here, so a device
string means the same thing everywhere and a precision that would be emulated warns once, here.
"""

from __future__ import annotations

import os
import warnings
from contextlib import nullcontext
from typing import Any

import torch

from probe.errors import ConfigError, DeviceError

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit CUDA request without CUDA is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a device; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device} requested but CUDA is not available here; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device {device} requested but MPS is not available; use --device cpu")
    return dev


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); Linux only, else assumed."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` means bf16 on CUDA and fp32 elsewhere; warns when bf16 would be emulated on a CPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision in ("bf16", "fp16") and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            f"--precision {precision} on a CPU without AVX512-BF16/AMX is emulated and usually slower than "
            "fp32 (measured 8x slower for efficientnet_lite0 on a 2-core EPYC); consider --precision fp32",
            RuntimeWarning,
            stacklevel=2,
        )
    return precision


def autocast(precision: str, device: torch.device) -> Any:
    """A context running the forward in ``precision`` (``fp32``: no autocast; ``bf16`` / ``fp16``: torch autocast)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def default_workers(device: torch.device) -> int:
    """DataLoader workers when none are asked for.

    CUDA: up to 8, so decoding keeps the GPU fed. CPU: the model already uses every core, and on
    small machines a worker process steals time from its threads (measured on 2 cores: 0 workers gave
    0.91-0.99x model-only throughput, 1 worker 0.86-0.92x), so 0 up to 4 cores, then a quarter of them.
    """
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, cores)
    return 0 if cores <= 4 else min(8, cores // 4)


def worker_init(_: int) -> None:
    """DataLoader ``worker_init_fn``: one thread per worker."""
    torch.set_num_threads(1)  # workers decode; the main process's threads run the model
