"""Training loop: interruption/resume equals an uninterrupted run; finished draws are reused; early stopping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probe.finetune import FinetuneConfig, FinetunePlan, run_finetune
from probe.finetune.train import cosine_with_warmup, plan_epochs
from tests.conftest import write_image_folder

CFG = dict(epochs=3, min_steps=0, image_size=32, batch_size=4, progress=False)


class Interrupt(Exception):
    pass


def _run(data: str, tmp_path: Path, name: str, mode: str = "full", hook=None, **kw: object):
    cfg = FinetuneConfig(mode=mode, **{**CFG, **kw})  # type: ignore[arg-type]
    return run_finetune(
        data,
        backbone="timm:test_vit",
        pretrained=False,
        config=cfg,
        plan=FinetunePlan(shots=(3,), seeds=1, bootstrap=0),
        results_dir=tmp_path / f"results-{name}",
        checkpoint_dir=tmp_path / f"ckpt-{name}",
        on_epoch_end=hook,
    )


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_resume_after_interruption_equals_uninterrupted(tmp_path: Path, mode: str) -> None:
    data = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=5)}"
    straight = _run(data, tmp_path, "a", mode)

    def stop_after_first(epoch: int) -> None:
        if epoch == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(data, tmp_path, "b", mode, hook=stop_after_first)
    assert not (tmp_path / "results-b").exists()  # nothing scored for the unfinished draw
    resumed = _run(data, tmp_path, "b", mode)
    assert resumed.rows[0].params["resumed_from_epoch"] == 1
    assert straight.rows[0].params["resumed_from_epoch"] == 0
    a = {r.metric: r.value for r in straight.rows}
    b = {r.metric: r.value for r in resumed.rows}
    assert a == b
    hist_a, hist_b = straight.rows[0].params["history"], resumed.rows[0].params["history"]
    assert hist_a == hist_b  # identical losses epoch by epoch


def test_finished_draw_is_reused_not_retrained(tmp_path: Path) -> None:
    data = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=4)}"
    first = _run(data, tmp_path, "a")
    again = _run(data, tmp_path, "a")
    assert first.reused == 0 and again.reused == 1
    assert [r.value for r in first.rows] == [r.value for r in again.rows]
    changed = _run(data, tmp_path, "a", lr=3e-4)  # a changed recipe is a new run, never a stale one
    assert changed.reused == 0 and changed.checkpoints != first.checkpoints


def test_full_data_early_stops_on_val_and_keeps_the_best_epoch(tmp_path: Path) -> None:
    data = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=4)}"
    run = run_finetune(
        data,
        backbone="timm:test_vit",
        pretrained=False,
        config=FinetuneConfig(**{**CFG, "epochs": 8, "patience": 1, "lr": 1e-12, "head_lr": 1e-12}),  # type: ignore[arg-type]
        plan=FinetunePlan(shots=("all",), seeds=1, bootstrap=0),
        results_dir=None,
        checkpoint_dir=tmp_path / "ckpt",
    )
    p = run.rows[0].params
    assert p["selection"] == "val-early-stopping"
    assert p["epochs_run"] < 8  # nothing improves with a ~zero learning rate: stops after patience
    vals = [h["val"] for h in p["history"]]
    assert p["best_epoch"] == int(np.argmax(vals))


def test_schedule_and_budget() -> None:
    f = cosine_with_warmup(100, 10)
    assert f(0) < f(5) < f(9) <= 1.0 and f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.0)
    assert f(55) == pytest.approx(0.5)
    cfg = FinetuneConfig(epochs=5, min_steps=50, batch_size=8, grad_accum=2)
    assert plan_epochs(16, cfg, early_stopping=False) == (50, 1)  # 1 step/epoch: the step floor decides
    assert plan_epochs(16, cfg, early_stopping=True) == (5, 1)
    assert plan_epochs(1000, cfg, early_stopping=False) == (5, 63)


def test_sigkill_mid_run_resumes_to_the_same_rows(tmp_path: Path) -> None:
    """``kill -9`` of ``probe finetune`` after its first checkpoint; the rerun ends as an uninterrupted run."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    data = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=6)}"

    def cmd(name: str) -> list[str]:
        return [sys.executable, "-m", "cli", "finetune", data, "--backbone", "timm:test_vit", "--random-weights",
                "--image-size", "32", "--shots", "4", "--seeds", "1", "--epochs", "6", "--min-steps", "0",
                "--batch-size", "2", "--bootstrap", "0", "--no-progress", "--json",
                "--checkpoints", str(tmp_path / f"ckpt-{name}"),
                "--results", str(tmp_path / f"res-{name}")]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd("killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "ckpt-killed").glob("*/last.pt")) and time.monotonic() < deadline:
        assert proc.poll() is None, "finished before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "res-killed").exists()
    resumed = json.loads(subprocess.run(cmd("killed"), env=env, capture_output=True, check=True, text=True).stdout)
    straight = json.loads(subprocess.run(cmd("straight"), env=env, capture_output=True, check=True, text=True).stdout)
    r, s = resumed["results"], straight["results"]
    assert r[0]["params"]["resumed_from_epoch"] >= 1 and s[0]["params"]["resumed_from_epoch"] == 0
    assert [x["value"] for x in r] == [x["value"] for x in s]
    assert r[0]["params"]["history"] == s[0]["params"]["history"]
