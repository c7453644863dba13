"""``probe curve nifti:<dir>`` end to end (slice-wise extraction, load-time fusion), then ``probe report``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def _nifti_folder(root: Path, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for ci, cls in enumerate(("normal", "lesion")):
            for i in range(per_class):
                vol = rng.normal(100, 20, size=(20, 20, 9)).astype(np.float32)
                vol[6:14, 6:14, 2:7] += 120 * ci  # a bright block through the central axial slices
                path = root / split / cls / f"{cls}_{i}.nii.gz"
                path.parent.mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    return root


def test_curve_and_report_on_a_nifti_folder(tmp_path: Path) -> None:
    data = f"nifti:{_nifti_folder(tmp_path / 'vols')}"
    results = str(tmp_path / "results")
    args = ["curve", data, "--backbone", "timm:test_vit", "--random-weights", "--image-size", "32",
            "--slices", "central:3", "--heads", "knn,linear", "--shots", "2,all", "--seeds", "2",
            "--bootstrap", "20", "--store-root", str(tmp_path / "emb"), "--results", results, "--json"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["results"]
    assert {r["pooling"] for r in rows} == {"cls:mean"} and {r["head_name"] for r in rows} == {"knn-k20", "linear"}
    assert all(r["params"]["fusion"] == "mean" for r in rows)
    assert {r["n_test"] for r in rows} == {8}
    res = runner.invoke(app, [*args[:-1], "--fusion", "max"])  # new fusion: same store, no re-extraction
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", results, "--out", str(tmp_path / "rep"), "--json"])
    assert res.exit_code == 0, res.output
    md = Path(json.loads(res.stdout)["markdown"]).read_text()
    assert "cls:mean" in md and "cls:max" in md
