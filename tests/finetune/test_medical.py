"""Fine-tuning on the medical inputs: multi-label manifests, 3D volumes (slice-wise) and DICOM folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probe.backbones import BackboneRequest
from probe.evaluate import PlanConfig, run_curve
from probe.finetune import FinetuneConfig, FinetunePlan, run_finetune
from probe.sources import MultiLabelOptions, SlicePolicy, SourceRequest
from tests.cli.test_multilabel_cli import _manifest
from tests.sources.test_dicom import write_dicom_folder
from tests.sources.test_volumes import _fake_adrenal

FAST = FinetuneConfig(epochs=2, min_steps=0, image_size=32, batch_size=8, progress=False)


def test_multilabel_manifest_trains_sigmoid_outputs_on_the_probe_draws(tmp_path: Path) -> None:
    data = f"csv:{_manifest(tmp_path / 'ml')}"
    shots: tuple[int | str, ...] = (2, "all")
    ml = MultiLabelOptions(label_columns=("bright", "red", "stripes"))
    probes = run_curve(
        SourceRequest(data, multilabel=ml),
        backbones=[BackboneRequest("timm:test_vit", pretrained=False, image_size=32)],
        plan=PlanConfig(heads=("prototype",), shots=shots, seeds=1, bootstrap=0),
        results_dir=None,
    ).rows
    run = run_finetune(
        SourceRequest(data, multilabel=ml), backbone=BackboneRequest("timm:test_vit", pretrained=False), config=FAST,
        plan=FinetunePlan(shots=shots, seeds=1, bootstrap=20), results_dir=None, checkpoint_dir=tmp_path / "ckpt",
    )  # fmt: skip
    digests = lambda rows: {(r.shots, r.seed): r.sample_digest for r in rows}  # noqa: E731
    assert digests(run.rows) == digests(probes)
    metrics = {r.metric for r in run.rows}
    assert {"macro_auroc", "macro_ap", "macro_f1", "auroc[red]"} <= metrics
    assert metrics == {r.metric for r in probes}
    by_shots = {r.shots: r.params for r in run.rows}
    assert by_shots["all"]["threshold_source"] == "val" and by_shots[2]["threshold_source"] == "train-draw"
    assert len(by_shots["all"]["thresholds"]) == 3
    auroc = next(r for r in run.rows if r.metric == "macro_auroc" and r.shots == "all")
    assert 0.0 <= auroc.value <= 1.0 and auroc.ci_low is not None


def test_volumes_are_fine_tuned_slice_wise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_adrenal(tmp_path / "data", monkeypatch, n=6)
    run = run_finetune(
        SourceRequest("medmnist:adrenalmnist3d", data_root=str(root), slices=SlicePolicy.parse("central:4")),
        backbone=BackboneRequest("timm:test_vit", pretrained=False), config=FAST,
        plan=FinetunePlan(shots=(2,), seeds=1, bootstrap=0), results_dir=None, checkpoint_dir=tmp_path / "ckpt",
    )  # fmt: skip
    row = run.rows[0]
    assert row.params["views"] == {"kind": "slices", "n": 4, "fusion": "mean"}
    assert row.n_train == 4 and row.n_test == 6 and np.isfinite(row.value)


def test_dicom_folder_fine_tunes(tmp_path: Path) -> None:
    root = write_dicom_folder(tmp_path / "dcm", per_class=6)
    run = run_finetune(
        f"dicom:{root}?window=soft_tissue&split=50,25,25&split_seed=1",
        backbone=BackboneRequest("timm:test_vit", pretrained=False),
        config=FAST, plan=FinetunePlan(shots=(2,), seeds=1, bootstrap=0, metrics=("accuracy",)), results_dir=None,
        checkpoint_dir=tmp_path / "ckpt",
    )  # fmt: skip
    assert {r.head_name for r in run.rows} == {"finetune-full"} and run.rows[0].n_train == 4
