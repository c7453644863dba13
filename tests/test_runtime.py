"""The one device / precision policy: device strings, cuda:N, emulated bf16, deterministic training flags."""

from __future__ import annotations

import pytest
import torch

from probe import runtime
from probe.errors import ConfigError, DeviceError
from probe.runtime import deterministic_training, parse_device, resolve_device, resolve_precision


def fake_gpus(monkeypatch: pytest.MonkeyPatch, n: int, *, capability: tuple[int, int] = (9, 0)) -> None:
    """Make PyTorch report ``n`` CUDA devices of a compute capability (nothing touches a real GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("auto", ("auto", None)), ("cpu", ("cpu", None)), ("cuda", ("cuda", None)), ("cuda:3", ("cuda", 3))],
)
def test_parse_device(text: str, parsed: tuple[str, int | None]) -> None:
    assert parse_device(text) == parsed


@pytest.mark.parametrize("text", ["tpu", "cuda:", "cuda:x", "cpu:0", "gpu", ""])
def test_parse_device_names_the_owner(text: str) -> None:
    with pytest.raises(ConfigError, match=rf"^ExtractConfig\(device={text!r}\) is not a device; use auto, cpu, cuda"):
        parse_device(text, owner="ExtractConfig")


def test_cuda_index_is_checked_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match=r"^ExtractConfig\(device='cuda:3'\): only 2 CUDA device\(s\); use cuda:0 to"):
        resolve_device("cuda:3", owner="ExtractConfig")


def test_cuda_without_cuda_is_a_clear_error() -> None:
    assert resolve_device("auto") == torch.device("cpu")  # CUDA is hidden from non-gpu tests
    with pytest.raises(DeviceError, match=r"^FinetuneConfig\(device='cuda:1'\): CUDA is not available here; use"):
        resolve_device("cuda:1", owner="FinetuneConfig")


@pytest.mark.parametrize(
    ("capability", "allow_fp16", "expected"),
    [((8, 0), True, "bf16"), ((9, 0), False, "bf16"), ((7, 0), True, "fp16"), ((7, 5), False, "fp32")],
)
def test_auto_precision_avoids_emulated_bf16(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], allow_fp16: bool, expected: str
) -> None:
    fake_gpus(monkeypatch, 1, capability=capability)
    assert resolve_precision("auto", torch.device("cuda", 0), allow_fp16=allow_fp16) == expected
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_explicit_bf16_on_an_emulating_gpu_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 1, capability=(7, 5))
    with pytest.warns(RuntimeWarning, match=r"ExtractConfig\(precision='bf16'\) on cuda:0, which emulates bf16"):
        assert resolve_precision("bf16", torch.device("cuda", 0), owner="ExtractConfig") == "bf16"
    with pytest.raises(ConfigError, match=r"^ExtractConfig\(precision='half'\) is unknown"):
        resolve_precision("half", torch.device("cpu"), owner="ExtractConfig")


@pytest.fixture
def global_flags() -> object:
    """Put the process-wide deterministic / cuDNN flags back whatever a test does."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    yield saved
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]


def test_deterministic_training_restores_every_flag(global_flags: object) -> None:
    # The flags are plain process state: setting them touches no GPU, so a "cuda" device runs on the CPU too.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    with deterministic_training(torch.device("cuda", 0)):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()  # strict: no silent non-determinism
        assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == (False, True)
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == (True, False)


def test_deterministic_training_refuses_a_nondeterministic_cublas(
    monkeypatch: pytest.MonkeyPatch, global_flags: object
) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    with (
        pytest.raises(ConfigError, match=r"export CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting Python"),
        deterministic_training(torch.device("cuda", 0), owner="FinetuneConfig"),
    ):
        pass
    assert torch.are_deterministic_algorithms_enabled() == global_flags[0]  # type: ignore[index]
    with deterministic_training(torch.device("cpu")):  # CPU kernels are deterministic: nothing to check or set
        pass


def test_cublas_workspace_is_set_on_import() -> None:
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in runtime.DETERMINISTIC_CUBLAS


def test_device_scope_makes_the_chosen_gpu_current() -> None:
    scope = runtime.device_scope(torch.device("cuda", 1))  # built, not entered: no CUDA needed
    assert isinstance(scope, torch.cuda.device) and scope.idx == 1
    with runtime.device_scope(torch.device("cpu")):
        pass
