"""The one device, precision, autocast and data-loader worker policy shared by every stage that runs torch.

Extraction, fine-tuning, the linear and kNN heads and the benchmarks resolve their ``device`` and
``precision`` here, so a device string (``auto``, ``cpu``, ``cuda``, ``cuda:N``) means the same thing
everywhere. :func:`parse_device` needs no torch, so the kNN head can parse a device without loading it.

Importing this module sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless the environment already holds
a value: cuBLAS reads it once, when its first handle is made, and deterministic fine-tuning needs
it; probe's own CUDA work always starts after this import (see :func:`deterministic_training`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from probe.errors import ConfigError, DeviceError

if TYPE_CHECKING:
    import torch

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
#: Workspace settings with which cuBLAS is deterministic (PyTorch's reproducibility notes).
DETERMINISTIC_CUBLAS: tuple[str, ...] = (":4096:8", ":16:8")
#: Compute capability from which GPUs run bf16 natively (Ampere); older ones (V100, T4) emulate it.
NATIVE_BF16_CAPABILITY = (8, 0)


def _cuda_initialised() -> bool:
    import sys

    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


# Whether cuBLAS may have started before CUBLAS_WORKSPACE_CONFIG was set (then it is not deterministic).
_CUBLAS_LATE = "CUBLAS_WORKSPACE_CONFIG" not in os.environ and _cuda_initialised()
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", DETERMINISTIC_CUBLAS[0])


def parse_device(device: str, *, owner: str = "parse_device") -> tuple[str, int | None]:
    """Split a device string into (kind, index) without importing torch.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        owner: the config class or function the user called, named in errors (``Owner(device=...)``).

    Returns:
        (kind, index): kind is ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``; index is N for
        ``cuda:N``, else None.

    Raises:
        ConfigError: anything else.
    """
    text = device.strip().lower() if isinstance(device, str) else ""
    kind, colon, index = text.partition(":")
    if kind in ("auto", "cpu", "mps") and not colon:
        return kind, None
    if kind == "cuda" and not colon:
        return "cuda", None
    if kind == "cuda" and index.isdigit():
        return "cuda", int(index)
    raise ConfigError(f"{owner}(device={device!r}) is not a device; use {DEVICE_CHOICES}")


def resolve_device(device: str, *, owner: str = "resolve_device") -> torch.device:
    """The torch device of a device string; CUDA devices always carry their index.

    ``auto`` picks the current CUDA device when PyTorch sees one, else the CPU; ``cuda`` is the
    current CUDA device; ``cuda:N`` is checked against the visible device count.

    Raises:
        ConfigError: not a device string.
        DeviceError: CUDA (or MPS) requested but not available, or N out of range.
    """
    import torch

    kind, index = parse_device(device, owner=owner)
    if kind == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{owner}(device={device!r}): CUDA is not available here; use {owner}(device=cpu)")
        count = torch.cuda.device_count()
        if index is not None and index >= count:
            use = f"cuda:0 to cuda:{count - 1}" if count > 1 else "cuda:0"
            raise DeviceError(f"{owner}(device={device!r}): only {count} CUDA device(s); use {use}")
        return torch.device("cuda", torch.cuda.current_device() if index is None else index)
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{owner}(device={device!r}): MPS is not available here; use {owner}(device=cpu)")
    return torch.device(kind)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); Linux only, else assumed."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether a CUDA device computes bf16 natively (compute capability 8.0, Ampere, or later)."""
    import torch

    return tuple(torch.cuda.get_device_capability(device)) >= NATIVE_BF16_CAPABILITY


def resolve_precision(
    precision: str, device: torch.device, *, allow_fp16: bool = True, owner: str = "resolve_precision"
) -> str:
    """The precision ``precision`` means on ``device``.

    ``auto``: bf16 on a CUDA device that runs it natively (compute capability >= 8.0); on older GPUs
    (V100, T4), which only emulate bf16, fp16 when ``allow_fp16`` (frozen forward passes) and fp32
    otherwise (training, which would need loss scaling for fp16); fp32 on CPU and MPS. An explicit
    bf16/fp16 on a CPU without bf16 instructions, or bf16 on an emulating GPU, warns once.

    Raises:
        ConfigError: not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"{owner}(precision={precision!r}) is unknown; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        if cuda_has_native_bf16(device):
            return "bf16"
        return "fp16" if allow_fp16 else "fp32"
    if precision in ("bf16", "fp16") and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            f"{owner}(precision={precision!r}) on a CPU without AVX512-BF16/AMX is emulated and usually slower than "
            f"fp32 (measured 8x slower for efficientnet_lite0 on a 2-core EPYC); consider {owner}(precision=fp32)",
            RuntimeWarning,
            stacklevel=2,
        )
    elif precision == "bf16" and device.type == "cuda" and not cuda_has_native_bf16(device):
        warnings.warn(
            f"{owner}(precision='bf16') on {device}, which emulates bf16 (compute capability < 8.0); "
            f"consider {owner}(precision=fp16) or {owner}(precision=fp32)",
            RuntimeWarning,
            stacklevel=2,
        )
    return precision


def autocast(precision: str, device: torch.device) -> Any:
    """A context running the forward in ``precision`` (``fp32``: no autocast; ``bf16`` / ``fp16``: torch autocast).

    Autocast keeps the frozen weights in fp32 and casts them per forward (they do not require grad,
    so autocast does not cache the cast): for a ViT-B at batch 64 that is about 0.2 GB of copies
    against about 1.1 TFLOP of matmuls, a few percent, bought with LayerNorm, softmax and the
    pooling staying in fp32 (a pooler cast to bf16 once would run those in bf16 too).
    """
    import torch

    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def device_scope(device: torch.device) -> Any:
    """A context making ``device`` the current CUDA device (a no-op elsewhere).

    A DataLoader's pin-memory thread and cuBLAS handles attach to the *current* device: without this,
    work on ``cuda:1`` would also open a context (hundreds of MB) on GPU 0.
    """
    import torch

    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


@contextmanager
def deterministic_training(device: torch.device, *, owner: str = "deterministic_training") -> Iterator[None]:
    """Deterministic kernels for the duration of a training run, restoring every flag afterwards.

    On CUDA: PyTorch's strict deterministic mode (an op without a deterministic kernel raises instead
    of warning), cuDNN deterministic without benchmarking, and scaled-dot-product attention on its
    math backend (the flash, memory-efficient and cuDNN backward passes are not deterministic). On
    other devices nothing changes: CPU kernels are deterministic already.

    Raises:
        ConfigError: CUDA without a deterministic ``CUBLAS_WORKSPACE_CONFIG`` (set too late or to
            another value): cuBLAS would not give repeatable results.
    """
    import torch

    if device.type != "cuda":
        yield
        return
    value = os.environ.get("CUBLAS_WORKSPACE_CONFIG", "")
    if _CUBLAS_LATE or value not in DETERMINISTIC_CUBLAS:
        raise ConfigError(
            f"{owner}(device={str(device)!r}): cuBLAS is not deterministic here (CUBLAS_WORKSPACE_CONFIG={value!r}"
            f"{', set after CUDA started' if _CUBLAS_LATE else ''}); export CUBLAS_WORKSPACE_CONFIG=:4096:8 "
            "before starting Python"
        )
    from torch.nn.attention import SDPBackend, sdpa_kernel

    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]


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
    import torch

    torch.set_num_threads(1)  # workers decode; the main process's threads run the model
