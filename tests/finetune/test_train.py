"""Training loop: interruption/resume equals an uninterrupted run; finished draws are reused; early stopping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probe.backbones import BackboneRequest
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
        backbone=BackboneRequest("timm:test_vit", pretrained=False),
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
    setup, other = first.rows[0].setup, changed.rows[0].setup  # every row names its input and its recipe
    assert setup["image_size"] and setup["weights"] and setup["pooling"] and setup["mode"] == "full"
    assert setup["store"] != other["store"] and (setup["lr"], other["lr"]) == (1e-4, 3e-4)


def test_full_data_early_stops_on_val_and_keeps_the_best_epoch(tmp_path: Path) -> None:
    data = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=4)}"
    run = run_finetune(
        data,
        backbone=BackboneRequest("timm:test_vit", pretrained=False),
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


def test_best_epoch_weights_are_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from probe.backbones import Preprocessor, load_backbone
    from probe.finetune import checkpoint as ckpt
    from probe.finetune import train as T
    from probe.finetune.model import build_classifier
    from probe.sources import open_source

    src = open_source(f"folder:{write_image_folder(tmp_path / 'imgs', per_class=3)}")
    bb = load_backbone("timm:test_vit", pretrained=False, image_size=32)
    cfg = FinetuneConfig(epochs=4, patience=0, image_size=32, batch_size=4, lr=1e-3, progress=False)
    model = build_classifier(bb.pooler, dim=bb.poolings["cls"], n_classes=2, config=cfg, pooling="cls", seed=0)
    scores = iter([0.2, 0.9, 0.1, 0.5])  # epoch 1 is the best
    monkeypatch.setattr(T, "val_score", lambda *a, **k: next(scores))
    setup = T.TrainSetup(
        source=src, train_rows=np.flatnonzero(src.splits == 0), val_rows=np.flatnonzero(src.splits == 1),
        n_classes=2, preprocess=Preprocessor(bb.preprocess), device=torch.device("cpu"), precision="fp32",
        workers=0, seed=0, folder=tmp_path / "ck",
    )  # fmt: skip
    out = T.train_classifier(model, setup, cfg)
    assert out.best_epoch == 1 and out.epochs_run == 4
    best, last = ckpt.load(setup.folder, ckpt.BEST_FILE), ckpt.load(setup.folder)
    assert best["epoch"] == 1 and last["epoch"] == 3
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in best["model"].items())
    assert not all(torch.equal(state[k], v) for k, v in last["model"].items())


def test_gradient_accumulation_equals_one_large_batch(tmp_path: Path) -> None:
    data = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=4)}"
    big = _run(data, tmp_path, "big", batch_size=4, grad_accum=1, epochs=2)
    acc = _run(data, tmp_path, "acc", batch_size=2, grad_accum=2, epochs=2)
    assert big.rows[0].params["steps"] == acc.rows[0].params["steps"] == 2 * 2
    for a, b in zip(big.rows, acc.rows, strict=True):
        assert a.value == pytest.approx(b.value, abs=1e-6)
    la = [h["loss"] for h in big.rows[0].params["history"]]
    lb = [h["loss"] for h in acc.rows[0].params["history"]]
    assert la == pytest.approx(lb, abs=1e-4)


def test_few_shot_runs_never_read_validation_labels(tmp_path: Path) -> None:
    import shutil

    root = write_image_folder(tmp_path / "imgs", per_class=4)
    swapped = tmp_path / "swapped"
    shutil.copytree(root, swapped)
    (swapped / "val" / "cyst").rename(swapped / "val" / "tmp")
    (swapped / "val" / "normal").rename(swapped / "val" / "cyst")
    (swapped / "val" / "tmp").rename(swapped / "val" / "normal")
    for mode in ("full", "lp-ft"):
        a = _run(f"folder:{root}", tmp_path, f"a-{mode}", mode=mode)
        b = _run(f"folder:{swapped}", tmp_path, f"b-{mode}", mode=mode)
        assert a.checkpoints != b.checkpoints  # different data: trained again, not reused
        assert [r.value for r in a.rows] == [r.value for r in b.rows]
        assert a.rows[0].params["history"] == b.rows[0].params["history"]
        if mode == "lp-ft":  # the head started from a logistic probe fitted on the draw only
            assert a.rows[0].params["lp"]["selection"] == b.rows[0].params["lp"]["selection"] != ""


def test_class_balanced_loss_weights() -> None:
    from probe.finetune.train import _loss_fn

    class _Src:
        labels = np.array([0, 0, 0, 1, 2, 2])

    setup = type("S", (), {"source": _Src, "train_rows": np.arange(6), "n_classes": 4, "multilabel": False})
    setup.device = __import__("torch").device("cpu")
    loss = _loss_fn(setup, FinetuneConfig(class_balanced=True))  # type: ignore[arg-type]
    # n / (present classes x n_c): 6/(3*3), 6/(3*1), 6/(3*2); an absent class weighs 0
    assert loss.weight.tolist() == pytest.approx([2 / 3, 2.0, 1.0, 0.0])


def test_checkpoints_are_dropped_after_done_unless_kept(tmp_path: Path) -> None:
    data = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=3)}"
    run = _run(data, tmp_path, "drop")
    folder = Path(run.checkpoints[0])
    assert (folder / "done.json").is_file() and not (folder / "last.pt").exists()
    kept = run_finetune(
        data, backbone=BackboneRequest("timm:test_vit", pretrained=False), config=FinetuneConfig(**CFG),  # type: ignore[arg-type]
        plan=FinetunePlan(shots=(3,), seeds=1, bootstrap=0), results_dir=None,
        checkpoint_dir=tmp_path / "ckpt-keep", keep_checkpoints=True,
    )  # fmt: skip
    assert (Path(kept.checkpoints[0]) / "last.pt").is_file()
    other_split = run_finetune(
        data, backbone=BackboneRequest("timm:test_vit", pretrained=False), config=FinetuneConfig(**CFG),  # type: ignore[arg-type]
        plan=FinetunePlan(shots=(3,), seeds=1, bootstrap=0, eval_split="val"), results_dir=None,
        checkpoint_dir=tmp_path / "ckpt-keep",
    )  # fmt: skip
    assert other_split.reused == 0 and other_split.checkpoints != kept.checkpoints
