"""``probe curve`` + ``probe report`` on a multi-modal manifest, and the slice/fusion options' errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cli.main import app
from tests._views import write_multimodal_manifest

runner = CliRunner()
TINY = ["--backbone", "timm:test_vit", "--random-weights", "--image-size", "32"]


def _one_line_error(args: list[str], pattern: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    last = res.output.strip().splitlines()[-1]  # a curve may extract (progress on stderr) before it fails
    assert last.startswith("error: ") and pattern in last and "Traceback" not in res.output


def test_curve_and_report_on_a_multimodal_manifest(tmp_path: Path) -> None:
    manifest = write_multimodal_manifest(tmp_path / "mm", per_class={"train": 16, "val": 4, "test": 16})
    common = [*TINY, "--store-root", str(tmp_path / "emb"), "--results", str(tmp_path / "res")]
    args = ["curve", f"csv:{manifest}", *common, "--heads", "knn,prototype", "--shots", "4,all"]
    res = runner.invoke(app, [*args, "--seeds", "2", "--bootstrap", "50", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["results"]
    assert {r["pooling"] for r in rows} == {"cls:concat"} and {r["params"]["fusion"] for r in rows} == {"concat"}
    assert {r["params"].get("ablate") for r in rows} == {None, "t1", "t2", "flair"}

    def score(ablate: str | None) -> float:
        return float(
            np.mean(
                [
                    r["value"]
                    for r in rows
                    if r["metric"] == "balanced_accuracy"
                    and r["shots"] == "all"
                    and r["params"].get("ablate") == ablate
                ]
            )
        )

    assert score(None) > 0.9 and score("t1") > 0.9 and score("flair") > 0.9 and score("t2") < 0.7
    again = runner.invoke(app, [*args, "--seeds", "1", "--fusion", "mean", "--no-ablate", "--json"])
    assert again.exit_code == 0, again.output
    assert "already complete" not in again.output  # the store is reused: fusion happens at load time
    extraction = json.loads(again.stdout)
    assert extraction["stores"] == json.loads(res.stdout)["stores"]
    assert {r["pooling"] for r in extraction["results"]} == {"cls:mean"}
    assert not any("ablate" in r["params"] for r in extraction["results"])
    out = tmp_path / "report"
    rep = runner.invoke(app, ["report", str(tmp_path / "res"), "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    md = (out / "report.md").read_text()
    assert "Modality ablation" in md and "knn-k20 without t2" in md and "prototype without flair" in md
    assert "Modality ablation" in (out / "report.html").read_text()


def test_view_option_errors(image_folder: Path, tmp_path: Path) -> None:
    common = [*TINY, "--store-root", str(tmp_path / "emb")]
    _one_line_error(["extract", f"folder:{image_folder}", *common, "--slices", "central:4"], "applies to 3D volumes")
    _one_line_error(
        ["extract", f"folder:{image_folder}", *common, "--slices", "middle"], "slice policy 'middle' is invalid"
    )
    curve = ["curve", f"folder:{image_folder}", *common, "--results", str(tmp_path / "r"), "--shots", "all"]
    _one_line_error([*curve, "--fusion", "meanmax"], "applies to multi-view stores")
    _one_line_error([*curve, "--fusion", "median"], "--fusion 'median' is unknown")
    _one_line_error([*curve, "--modality-dropout", "0.3"], "--modality-dropout 0.3 applies to multi-modal stores")
