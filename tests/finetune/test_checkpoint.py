"""Checkpoint files: safe loading (no code runs), one-line errors, RNG states without per-GPU CUDA states."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from probe.errors import ProbeError, StoreError
from probe.finetune import checkpoint as ckpt
from tests.test_runtime import fake_gpus


def _state(**extra: object) -> dict[str, object]:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    state: dict[str, object] = {
        "epoch": 0, "model": ckpt.trainable_state(model), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(), "rng": ckpt.rng_state(), "best": -float("inf"), "best_epoch": -1,
        "bad": 0, "history": [{"epoch": 0, "loss": 0.5}], "lp": {"C": 1.0, "selection": "cv5"}, "steps": 3,
        "seconds": 1.5,
    }  # fmt: skip
    state.update(extra)
    return state


def test_a_full_state_loads_with_weights_only(tmp_path: Path) -> None:
    ckpt.save_epoch(tmp_path, _state())
    back = ckpt.load(tmp_path)
    assert back is not None and back["steps"] == 3 and back["lp"] == {"C": 1.0, "selection": "cv5"}
    assert set(back["optimizer"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


def test_rng_state_round_trips_through_a_file(tmp_path: Path) -> None:
    state = _state()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ckpt.save_epoch(tmp_path, {**state, "rng": ckpt.rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ckpt.set_rng_state(ckpt.load(tmp_path)["rng"])  # type: ignore[index]
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resume_with_fewer_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A state saved with two GPUs visible restores with one: CUDA generators are reseeded per epoch, not saved."""

    def no_cuda_state(*_: object) -> None:
        raise IndexError("list index out of range")  # what torch raises for a missing GPU's state

    fake_gpus(monkeypatch, 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", no_cuda_state)
    state = ckpt.rng_state()
    assert set(state) == {"python", "numpy", "torch"}
    fake_gpus(monkeypatch, 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", no_cuda_state)
    ckpt.set_rng_state({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)] * 2})  # an older checkpoint's entry


class _RunsCode:
    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.sentinel}",)


def test_a_crafted_checkpoint_runs_no_code(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({**_state(), "model": _RunsCode(sentinel)}, folder / ckpt.STATE_FILE)
    with pytest.raises(StoreError) as info:
        ckpt.load(folder)
    assert not sentinel.exists()
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ProbeError)
    assert message.startswith(f"checkpoint {folder / ckpt.STATE_FILE} cannot be read (")
    assert message.endswith(f"; delete the folder {folder} to train this draw from scratch")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not a checkpoint", r"cannot be read \(.*\); delete the folder .* to train this draw from scratch$"),
        ({"epoch": 0}, r"is not a probe checkpoint \(no 'model'\); delete the folder"),
        ([1, 2], r"is not a probe checkpoint \(no 'epoch'\)"),
    ],
)
def test_a_malformed_checkpoint_is_one_clear_line(tmp_path: Path, content: object, match: str) -> None:
    path = tmp_path / ckpt.STATE_FILE
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(StoreError, match=match) as info:
        ckpt.load(tmp_path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    torch.save({"epoch": 1}, tmp_path / ckpt.BEST_FILE)
    with pytest.raises(StoreError, match=r"best.pt is not a probe checkpoint \(no 'model'\)"):
        ckpt.load(tmp_path, ckpt.BEST_FILE)
