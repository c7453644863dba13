"""Fine-tuning paths written for the GPU, checked on the CPU: view chunks, loader reuse, syncs, strict determinism."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from probe import runtime
from probe.backbones import BackboneRequest
from probe.errors import ConfigError
from probe.finetune import AugmentConfig, FinetuneConfig, FinetunePlan, model, run, run_finetune, train
from tests.conftest import write_image_folder


class _Pooler(nn.Module):
    """A tiny conv pooler that records how many images each forward sees."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.sizes.append(x.shape[0])
        return {"gap": torch.relu(self.conv(x)).mean((2, 3))}


def _grads(clf: model.Classifier, x: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    clf.zero_grad()
    out = clf(x, present)
    out.square().sum().backward()
    return out.detach(), [p.grad.clone() for p in clf.parameters() if p.grad is not None]


def test_many_views_go_through_the_backbone_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    clf = model.Classifier(_Pooler(), pooling="gap", dim=4, n_classes=3, freeze_norm=True)
    x = torch.randn(3, 20, 3, 8, 8)  # 3 volumes x 20 slices: 60 view images
    present = torch.ones(3, 20, dtype=torch.bool)
    present[1, 15:] = False
    chunked_out, chunked_grads = _grads(clf, x, present)
    sizes = clf.pooler.sizes
    assert max(sizes) <= model.VIEW_CHUNK and sum(sizes) == 2 * 55  # forward + checkpoint recompute
    monkeypatch.setattr(model, "VIEW_CHUNK", 10_000)  # one forward with every view, as before
    whole_out, whole_grads = _grads(clf, x, present)
    torch.testing.assert_close(chunked_out, whole_out)
    for a, b in zip(chunked_grads, whole_grads, strict=True):
        torch.testing.assert_close(a, b)
    clf.pooler.sizes.clear()
    monkeypatch.setattr(model, "VIEW_CHUNK", 32)
    with torch.inference_mode():
        torch.testing.assert_close(clf(x, present), whole_out)
    assert clf.pooler.sizes == [32, 23]  # evaluation: chunks, no recompute


def _finetune(tmp_path: Path, **kw: Any) -> Any:
    folder = write_image_folder(tmp_path / "imgs", per_class=4, size=16)
    cfg = FinetuneConfig(
        epochs=3, min_steps=0, image_size=32, batch_size=2, progress=False, augment=AugmentConfig(enabled=False), **kw
    )
    return run_finetune(
        f"folder:{folder}",
        backbone=BackboneRequest("timm:test_vit", pretrained=False),
        config=cfg,
        plan=FinetunePlan(shots=(3,), seeds=1, bootstrap=0),
        results_dir=None,
        checkpoint_dir=tmp_path / "ckpt",
    )


def test_one_training_loader_for_every_epoch_and_one_sync_per_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaders: list[bool] = []
    make_loader = train.make_loader

    def counting(*args: Any, **kw: Any) -> Any:
        loaders.append(bool(kw.get("persistent")))
        return make_loader(*args, **kw)

    syncs = {"float32": 0}
    to_float = torch.Tensor.__float__

    def counting_float(t: torch.Tensor) -> float:
        if t.dtype == torch.float32 and t.ndim == 0 and t.grad_fn is None:
            syncs["float32"] += 1  # what float(loss.detach()) per micro-batch did
        return to_float(t)

    monkeypatch.setattr(train, "make_loader", counting)
    monkeypatch.setattr(torch.Tensor, "__float__", counting_float)
    done = _finetune(tmp_path)
    history = done.rows[0].params["history"]
    assert len(history) == 3 and all(h["loss"] > 0 for h in history)
    assert loaders == [True, False]  # the training loader (reused by 3 epochs), then the test predictions
    assert syncs["float32"] == 0


def test_no_deterministic_kernel_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bicubic_backward(*_: Any, **__: Any) -> Any:
        raise RuntimeError(
            "upsample_bicubic2d_backward_out_cuda does not have a deterministic implementation, but you set "
            "'torch.use_deterministic_algorithms(True)'.\nmore"
        )

    monkeypatch.setattr(run, "_train_and_predict", bicubic_backward)
    monkeypatch.setattr(runtime, "device_scope", lambda device: nullcontext())
    monkeypatch.setattr(runtime, "resolve_device", lambda device, owner="": torch.device("cuda", 0))
    monkeypatch.setattr(runtime, "resolve_precision", lambda *a, **k: "fp32")
    monkeypatch.setattr(runtime, "default_workers", lambda device: 0)
    saved = torch.are_deterministic_algorithms_enabled()
    with pytest.raises(ConfigError, match=r"^FinetuneConfig\(device='cuda:0'\): upsample_bicubic2d_backward_out_cuda .*"
                       r"FinetuneConfig\(image_size=None\)"):  # fmt: skip
        _finetune(tmp_path)
    assert torch.are_deterministic_algorithms_enabled() == saved  # the strict mode ended with the draw


class _Interrupt(Exception):
    pass


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["full", "lora"])
def test_cuda_resume_equals_an_uninterrupted_run_in_strict_deterministic_mode(tmp_path: Path, mode: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    folder = write_image_folder(tmp_path / "imgs", per_class=5)

    def go(name: str, hook: Any = None) -> Any:
        cfg = FinetuneConfig(mode=mode, epochs=3, min_steps=0, image_size=32, batch_size=4, progress=False,
                             device="cuda", precision="bf16")  # fmt: skip
        return run_finetune(
            f"folder:{folder}", backbone=BackboneRequest("timm:test_vit", pretrained=False), config=cfg,
            plan=FinetunePlan(shots=(3,), seeds=1, bootstrap=0), results_dir=None,
            checkpoint_dir=tmp_path / f"ckpt-{name}", on_epoch_end=hook,
        )  # fmt: skip

    def stop_after_first(epoch: int) -> None:
        if epoch == 0:
            raise _Interrupt

    straight = go("a")
    with pytest.raises(_Interrupt):
        go("b", stop_after_first)
    resumed = go("b")
    assert resumed.rows[0].params["resumed_from_epoch"] == 1
    assert straight.rows[0].params["device"].startswith("cuda")
    assert {r.metric: r.value for r in straight.rows} == {r.metric: r.value for r in resumed.rows}
    assert straight.rows[0].params["history"] == resumed.rows[0].params["history"]
    assert not torch.are_deterministic_algorithms_enabled()  # strict mode ended with the run
