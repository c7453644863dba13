"""``probe run STUDY.toml``: a checked schema, a resumable matrix, one run folder, failures reported at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from probe.errors import ConfigError
from probe.study import parse_study, read_study
from tests.conftest import write_image_folder

runner = CliRunner()


def _study(tmp_path: Path, datasets: list[str], extra: str = "") -> Path:
    path = tmp_path / "screen.toml"
    quoted = ", ".join(f'"{d}"' for d in datasets)
    path.write_text(
        f'out = "{tmp_path / "runs"}"\nstore_root = "{tmp_path / "emb"}"\ndatasets = [{quoted}]\n{extra}\n'
        '[[backbones]]\nname = "timm:test_vit"\nimage_size = 32\npretrained = false\n\n'
        '[plan]\nheads = ["prototype", "knn"]\nshots = [2, "all"]\nseeds = 2\nbootstrap = 0\n\n'
        '[report]\nmetrics = ["balanced_accuracy", "accuracy"]\n'
    )
    return path


def test_unknown_keys_are_named_with_their_section() -> None:
    base = {"datasets": ["medmnist:breastmnist"], "backbones": [{"name": "efficientnet_lite0"}]}
    with pytest.raises(ConfigError, match=r"\[plan\]: unknown key\(s\) shot; this section accepts heads, shots"):
        parse_study({**base, "plan": {"shot": [1]}}, default_name="s")
    with pytest.raises(ConfigError, match=r"\[\[backbones\]\] #1: unknown key\(s\) size"):
        parse_study({**base, "backbones": [{"name": "x", "size": 3}]}, default_name="s")
    with pytest.raises(ConfigError, match=r"study file: unknown key\(s\) dataset"):
        parse_study({"dataset": "x"}, default_name="s")
    with pytest.raises(ConfigError, match="unknown head 'svm'"):
        parse_study({**base, "plan": {"heads": ["svm"]}}, default_name="s")
    assert parse_study(base, default_name="s").name == "s"


def test_a_study_runs_resumes_and_reports_a_failing_cell(tmp_path: Path) -> None:
    good = write_image_folder(tmp_path / "good", per_class=4)
    unsplit = write_image_folder(tmp_path / "unsplit", per_class=3, splits=False)
    path = _study(tmp_path, [f"folder:{good}", f"folder:{unsplit}"])
    dry = runner.invoke(app, ["run", str(path), "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert [c["status"] for c in json.loads(dry.stdout)["cells"]] == ["to extract", "to extract"]
    res = runner.invoke(app, ["run", str(path), "--json"])
    assert res.exit_code == 1, res.output  # the unsplit dataset fails; the good one still runs
    out = json.loads(res.stdout)
    assert len(out["done"]) == 1 and len(out["failed"]) == 1 and "?split=70,10,20" in next(iter(out["failed"].values()))
    folder = Path(out["folder"])
    assert folder == tmp_path / "runs" / "screen"
    for name in ("study.toml", "resolved.json", "command.txt", "versions.json", "run.log", "report/report.html",
                 "results/results.jsonl"):  # fmt: skip
        assert (folder / name).is_file(), name
    md = (folder / "report" / "report.md").read_text()  # one report: a section per metric
    assert "· balanced accuracy" in md and "· accuracy" in md and not (folder / "report-accuracy").exists()
    rows = [json.loads(line) for line in (folder / "results" / "results.jsonl").read_text().splitlines()]
    assert {r["run_id"] for r in rows} == {out["run_id"]} and all(r["command"] for r in rows)
    again = runner.invoke(app, ["run", str(path), "--json"])
    assert json.loads(again.stdout)["skipped"] == out["done"]  # a finished cell is not run again
    assert read_study(path).plan.seeds == 2


def test_the_readme_study_file_is_valid(tmp_path: Path) -> None:
    import re

    from tests.conftest import REPO

    block = re.search(r"```toml\n(# screen.toml\n.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "README lost its study example"
    (tmp_path / "screen.toml").write_text(block.group(1))
    study = read_study(tmp_path / "screen.toml")
    assert study.name == "screen" and study.backbones[0].image_size == 64 and study.plan.plan().seeds == 5
