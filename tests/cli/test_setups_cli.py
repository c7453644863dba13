"""Runs at different settings never share a curve: `probe results`, `probe report` and the figure keep them apart."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import cli_ok


def test_two_image_sizes_and_random_weights_are_three_curves(
    image_folder: Path, tiny_vit_weights: Path, tmp_path: Path
) -> None:
    res = tmp_path / "res"
    common = [f"folder:{image_folder}", "--backbone", "timm:test_vit", "--store-root", str(tmp_path / "emb")]
    common += ["--results", str(res), "--heads", "prototype", "--shots", "1,all", "--seeds", "2", "--bootstrap", "0"]
    cli_ok(["curve", *common, "--weights", str(tiny_vit_weights), "--image-size", "32"])
    cli_ok(["curve", *common, "--weights", str(tiny_vit_weights), "--image-size", "48"])
    cli_ok(["curve", *common, "--random-weights", "--image-size", "32"])

    rows = json.loads(cli_ok(["results", str(res), "--json"]))["results"]
    assert len({json.dumps(r["setup"], sort_keys=True) for r in rows}) == 3
    assert all(r["setup"]["head"] == "prototype" and r["setup"]["store"] for r in rows)
    names = {r["backbone"] for r in rows}
    assert names == {
        "timm:test_vit @32px [test_vit.safetensors]",
        "timm:test_vit @48px [test_vit.safetensors]",
        "timm:test_vit @32px [random, seed 0]",
    }
    table = cli_ok(["results", str(res), "--metric", "balanced_accuracy"])
    assert sum(name in table for name in names) == 3
    assert len([ln for ln in table.splitlines() if ln.startswith("imgs ")]) == 3  # three table lines, one each

    out = tmp_path / "report"
    cli_ok(["report", str(res), "--out", str(out), "--formats", "svg"])
    markdown = (out / "report.md").read_text()
    assert all(name in markdown for name in names)
    assert "Setups: timm:test_vit @32px resize [random, seed 0] fp32; timm:test_vit @32px resize" in markdown
    svg = next(out.rglob("*.svg")).read_text()
    assert all(f"{name} · prototype" in svg for name in names)  # the figure legend: one entry per setup


def test_rows_without_a_setup_still_load_and_are_shown_as_such(tmp_path: Path) -> None:
    from probe.results import load_results

    base = {
        "dataset": "d", "backbone": "b", "pooling": "gap", "head": "linear", "protocol": "shots", "shots": 1,
        "fraction": None, "seed": 0, "metric": "accuracy", "value": 0.5, "ci_low": None, "ci_high": None,
        "ci_method": "none", "n_train": 2, "n_test": 2, "n_classes": 2, "labels_per_class": 1.0, "params": {},
        "split": "test", "store_fingerprint": "f", "sample_digest": "s", "seconds": 0.0,
    }  # fmt: skip
    old = {**base, "schema": "probe.results/1"}
    new = {**base, "store_fingerprint": "g", "setup": {"store": "g", "image_size": 64, "head": "linear"}}
    (tmp_path / "results.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    frame: pd.DataFrame = load_results(tmp_path)
    assert sorted(frame["backbone"]) == ["b", "b (no setup)"]
    assert set(load_results(tmp_path, backbone="b")["backbone_name"]) == {"b"}


def test_a_frame_not_from_load_results_still_keeps_setups_apart() -> None:
    from probe.report import summary_table

    base = {
        "dataset": "d", "backbone": "b", "pooling": "gap", "head_name": "linear", "protocol": "shots", "shots": 1,
        "fraction": None, "seed": 0, "metric": "accuracy", "ci_low": None, "ci_high": None, "n_train": 2,
        "n_test": 2, "n_classes": 2, "labels_per_class": 1.0, "split": "test", "store_fingerprint": "f",
    }  # fmt: skip
    rows = [
        {**base, "value": 0.5, "setup": {"store": "f", "image_size": 32, "head": "linear"}},
        {**base, "value": 0.9, "store_fingerprint": "g", "setup": {"store": "g", "image_size": 64, "head": "linear"}},
    ]
    table = summary_table(pd.DataFrame(rows), metric="accuracy")
    assert sorted(zip(table["backbone"], table["mean"], strict=True)) == [("b @32px", 0.5), ("b @64px", 0.9)]
