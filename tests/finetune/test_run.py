"""Fine-tuning uses the probes' draws, writes probe-shaped rows, and learns real MedMNIST images."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.backbones import BackboneRequest
from probe.evaluate import PlanConfig, run_curve
from probe.finetune import FinetuneConfig, FinetunePlan, run_finetune
from probe.results import REQUIRED_FIELDS
from probe.sources import SourceRequest
from tests.conftest import write_image_folder


def test_training_ids_equal_the_probes_draws(tmp_path: Path) -> None:
    data = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=9)}"
    shots: tuple[int | str, ...] = (1, 4, "all")
    probes = run_curve(
        data,
        backbones=[BackboneRequest("timm:test_vit", pretrained=False, image_size=32)],
        plan=PlanConfig(heads=("prototype",), shots=shots, seeds=2, bootstrap=0),
        results_dir=None,
    ).rows
    ft = run_finetune(
        data,
        backbone=BackboneRequest("timm:test_vit", pretrained=False),
        config=FinetuneConfig(mode="bitfit", epochs=1, min_steps=0, image_size=32, progress=False),
        plan=FinetunePlan(shots=shots, seeds=2, bootstrap=0),
        results_dir=tmp_path / "results",
        checkpoint_dir=tmp_path / "ckpt",
    ).rows
    key = lambda r: (r.seed, r.shots, r.protocol)  # noqa: E731
    probe_digests = {key(r): r.sample_digest for r in probes}
    ft_digests = {key(r): r.sample_digest for r in ft}
    assert ft_digests == probe_digests and len(set(ft_digests.values())) == 5  # 2 seeds x 2 levels + all
    assert {r.dataset for r in ft} == {r.dataset for r in probes}
    assert {r.backbone for r in ft} == {r.backbone for r in probes}
    row = ft[0].to_dict()
    assert set(row) >= REQUIRED_FIELDS and row["head_name"] == "finetune-bitfit"
    for field in ("trainable_params", "total_params", "peak_memory_mb", "augment", "lr", "epochs_run"):
        assert field in row["params"], field


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_tiny_backbone_beats_chance_on_bloodmnist(medmnist_root: Path, tmp_path: Path, mode: str) -> None:
    """A random-init timm test CNN, fine-tuned on 32 real BloodMNIST images per class, beats 1/8 chance."""
    run = run_finetune(
        SourceRequest("medmnist:bloodmnist", data_root=str(medmnist_root), limit=600),
        backbone=BackboneRequest("timm:test_efficientnet", pretrained=False),
        config=FinetuneConfig(
            mode=mode, epochs=12, image_size=28, lr=1e-3 if mode == "full" else 5e-3, head_lr=1e-2, progress=False
        ),
        plan=FinetunePlan(shots=(32,), seeds=1, bootstrap=200),
        results_dir=None,
        checkpoint_dir=tmp_path / "ckpt",
    )
    values = {r.metric: r for r in run.rows}
    bal = values["balanced_accuracy"]
    assert bal.n_train == 256 and bal.n_test == 600
    assert bal.ci_low is not None and bal.ci_low > 0.25, (bal.value, bal.ci_low)  # chance is 0.125
    assert values["macro_auroc"].value > 0.75
