"""``probe curve`` over several datasets: one run id, the command in every row, progress on stderr."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tests.conftest import write_image_folder

TINY = ["--backbone", "timm:test_vit", "--random-weights", "--image-size", "32"]


def test_curve_over_two_datasets(tmp_path: Path) -> None:
    a = write_image_folder(tmp_path / "a", per_class=4, seed=1)
    b = write_image_folder(tmp_path / "b", per_class=4, seed=2)
    args = ["curve", f"folder:{a}", f"folder:{b}", *TINY, "--heads", "prototype", "--shots", "2,all"]
    args += ["--seeds", "2", "--bootstrap", "0", "--store-root", str(tmp_path / "emb")]
    res = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "res"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {r["dataset_spec"].split("/")[-1] for r in out["results"]} == {"a", "b"} and len(out["stores"]) == 2
    assert {r["run_id"] for r in out["results"]} == {out["run_id"]}
    commands = {r["command"] for r in out["results"]}  # sys.argv as typed (under CliRunner: pytest's)
    assert len(commands) == 1 and commands.pop().startswith("probe")  # "probe" alone when pytest has no args
    assert "probing" in res.stderr  # the progress bar over draws


def test_a_bad_second_dataset_fails_before_the_first_is_embedded(tmp_path: Path) -> None:
    good = write_image_folder(tmp_path / "good", per_class=3)
    unsplit = write_image_folder(tmp_path / "unsplit", per_class=3, splits=False)
    args = ["curve", f"folder:{good}", f"folder:{unsplit}", *TINY, "--store-root", str(tmp_path / "emb")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "?split=70,10,20" in res.output
    assert not (tmp_path / "emb").exists()


def test_results_wide_is_one_row_per_configuration(tmp_path: Path) -> None:
    a = write_image_folder(tmp_path / "a", per_class=4, seed=1)
    args = ["curve", f"folder:{a}", *TINY, "--heads", "prototype,knn", "--shots", "2,all", "--seeds", "2"]
    args += ["--bootstrap", "0", "--store-root", str(tmp_path / "emb"), "--results", str(tmp_path / "res")]
    assert CliRunner().invoke(app, args).exit_code == 0
    csv, md = tmp_path / "wide.csv", tmp_path / "wide.md"
    res = CliRunner().invoke(app, ["results", str(tmp_path / "res"), "--wide", "--metric", "accuracy,macro_f1",
                                   "--csv", str(csv), "--markdown", str(md), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["wide"]
    assert sorted(r["head_name"] for r in rows) == ["knn-k20", "prototype"]
    assert {"accuracy@2", "accuracy@all", "macro_f1@2", "macro_f1@all:low"} <= set(rows[0])
    import pandas as pd

    frame = pd.read_csv(csv)
    assert len(frame) == 2 and "accuracy@all" in frame.columns
    assert md.read_text().startswith("| dataset | backbone | pooling | head_name | regime | accuracy@2 |")
