"""``probe curve seg:...`` end to end on 2D mask pairs and 3D label volumes (tiny random ViT and CNN),
then ``probe report``: Dice curves, shots counted in labelled images or volumes, example overlays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cli.main import app
from tests.seg_synth import make_seg_2d, make_seg_3d

runner = CliRunner()
VIT = "timm:test_vit"
CNN = "timm:efficientnet_lite0"


def _curve(
    data: str, tmp_path: Path, *, backbones: str, heads: str, extra: tuple[str, ...] = ()
) -> list[dict[str, object]]:
    args = ["curve", data, "--backbone", backbones, "--random-weights", "--image-size", "64", "--heads", heads,
            "--shots", "1,2,all", "--seeds", "2", "--bootstrap", "20", "--store-root", str(tmp_path / "emb"),
            "--results", str(tmp_path / "results"), "--json", *extra]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows: list[dict[str, object]] = json.loads(res.stdout)["results"]
    return rows


def _report(tmp_path: Path) -> str:
    res = runner.invoke(app, ["report", str(tmp_path / "results"), "--out", str(tmp_path / "rep"), "--json"])
    assert res.exit_code == 0, res.output
    return Path(json.loads(res.stdout)["markdown"]).read_text()


def test_2d_curve_and_report(tmp_path: Path) -> None:
    manifest = make_seg_2d(tmp_path / "data", n=(8, 3, 4), side=32)
    rows = _curve(f"seg:{manifest}", tmp_path, backbones=f"{VIT},{CNN}", heads="seg-linear,seg-knn")
    heads = {r["head_name"] for r in rows}
    assert heads == {"seg-linear", "seg-knn"} and {r["pooling"] for r in rows} == {"patch"}
    metrics = {r["metric"] for r in rows}
    assert metrics == {"dice", "iou", "dice:disc", "dice:square"}
    dice = [r for r in rows if r["metric"] == "dice"]
    assert all(0.0 <= float(r["value"]) <= 1.0 and r["ci_low"] is not None for r in dice)  # type: ignore[arg-type]
    assert {(r["shots"], r["labels_per_class"]) for r in dice} == {(1, 1.0), (2, 2.0), ("all", 8.0)}
    assert {r["n_test"] for r in rows} == {4}
    full = [r for r in dice if r["protocol"] == "full" and r["head_name"] == "seg-linear"]
    assert all(r["params"]["selection"] == "val" for r in full)  # type: ignore[index]  # C chosen on val only
    md = _report(tmp_path)
    assert "Dice" in md and "labelled images" in md and "example predictions" in md
    assert "all (8 images)" in md
    examples = list((tmp_path / "results" / "examples").rglob("*.npz"))
    assert len(examples) == 4  # 2 backbones x 2 heads
    with np.load(examples[0]) as kept:
        assert kept["pred"].shape == kept["truth"].shape == (4, 64, 64) and kept["images"].shape == (4, 64, 64, 3)


def test_3d_curve_counts_volumes_and_scores_volume_dice(tmp_path: Path) -> None:
    manifest = make_seg_3d(tmp_path / "data", n=(4, 2, 2), side=20, depth=5)
    rows = _curve(f"seg:{manifest}", tmp_path, backbones=VIT, heads="seg-linear,seg-conv", extra=("--pooling", "patch"))
    dice = [r for r in rows if r["metric"] == "dice"]
    assert {(r["shots"], r["labels_per_class"], r["n_train"]) for r in dice} == {(1, 1.0, 5), (2, 2.0, 10),
                                                                                  ("all", 4.0, 20)}  # fmt: skip
    assert "volume_dice" in {r["metric"] for r in rows} and {r["n_test"] for r in rows} == {10}
    md = _report(tmp_path)
    assert "labelled volumes" in md and "all (4 volumes)" in md


def test_classification_heads_on_masks_and_bad_masks_are_one_line(tmp_path: Path) -> None:
    manifest = make_seg_2d(tmp_path / "data", n=(4, 2, 2), side=16)
    res = runner.invoke(app, ["curve", f"seg:{manifest}", "--backbone", VIT, "--random-weights", "--heads", "linear",
                              "--store-root", str(tmp_path / "emb"), "--results", str(tmp_path / "r")])  # fmt: skip
    assert res.exit_code == 1 and "does not support segmentation data; use seg-linear" in res.output
    assert len(res.output.strip().splitlines()) == 1
    (tmp_path / "data" / "train_0_mask.png").write_bytes((tmp_path / "data" / "train_0.png").read_bytes())  # RGB
    res = runner.invoke(app, ["extract", f"seg:{manifest}", "--backbone", VIT, "--random-weights",
                              "--pooling", "patch", "--store-root", str(tmp_path / "emb")])  # fmt: skip
    assert res.exit_code == 1 and "has pixel mode RGB" in res.output and "integer label map" in res.output
