"""``probe finetune`` through CliRunner: the row schema, one-line errors, and the report beside probe rows."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from probe.results import REQUIRED_FIELDS
from tests.conftest import write_image_folder

runner = CliRunner()


def test_finetune_json_rows_and_report(tmp_path: Path) -> None:
    data = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=4)}"
    results = str(tmp_path / "results")
    common = ["--backbone", "timm:test_vit", "--random-weights", "--image-size", "32", "--results", results]
    args = ["finetune", data, *common, "--mode", "lora", "--lora-rank", "4", "--shots", "2,all", "--seeds", "1"]
    res = runner.invoke(app, [*args, "--epochs", "1", "--min-steps", "0", "--bootstrap", "20", "--json",
                              "--checkpoints", str(tmp_path / "ckpt")])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    rows = out["results"]
    assert rows and all(set(r) >= REQUIRED_FIELDS for r in rows)
    assert {r["head_name"] for r in rows} == {"finetune-lora"} and {r["shots"] for r in rows} == {2, "all"}
    assert all(r["params"]["lora"]["rank"] == 4 and r["params"]["trainable_params"] > 0 for r in rows)
    res = runner.invoke(app, ["curve", data, *common, "--heads", "linear", "--shots", "2,all", "--seeds", "1",
                              "--bootstrap", "20", "--store-root", str(tmp_path / "emb")])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", results, "--out", str(tmp_path / "rep"), "--json"])
    assert res.exit_code == 0, res.output
    md = Path(json.loads(res.stdout)["markdown"]).read_text()
    assert "finetune-lora" in md and "linear" in md


def test_finetune_errors_are_one_line(tmp_path: Path) -> None:
    data = f"folder:{write_image_folder(tmp_path / 'imgs', per_class=2)}"
    for extra, pattern in (
        (["--mode", "adapter"], "--mode 'adapter' is unknown"),
        (["--crop-scale", "0.5"], "--crop-scale '0.5' must be two numbers"),
        (["--mode", "lora", "--lora-targets", "nope"], "--lora-targets 'nope' matches no Linear/Conv layer"),
        (["--pooling", "gem"], "--pooling 'gem' is not offered"),
    ):
        res = runner.invoke(app, ["finetune", data, "--backbone", "timm:test_vit", "--random-weights",
                                  "--image-size", "32", "--no-save", "--shots", "1", *extra])  # fmt: skip
        assert res.exit_code == 1, res.output
        assert res.output.startswith("error: ") and pattern in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1


def test_corrupt_image_error_says_what_fine_tuning_needs(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", per_class=2)
    for png in (root / "train").rglob("*.png"):
        png.write_bytes(b"not a png")
    args = ["finetune", f"folder:{root}", "--backbone", "timm:test_vit", "--random-weights", "--image-size", "32"]
    res = runner.invoke(
        app, [*args, "--no-save", "--shots", "1", "--no-progress", "--checkpoints", str(tmp_path / "ck")]
    )
    assert res.exit_code == 1 and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert "cannot decode image" in res.output and "fine-tuning reads every drawn image" in res.output
