"""``probe data check`` through CliRunner: exit codes 0 (clean), 2 (leak), 1 (user error); prose and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tests.sources.test_check import write_set

runner = CliRunner()


def test_clean_set_exits_zero(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "check", f"csv:{write_set(tmp_path / 'd')}", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "24 samples, 2 classes, 12 groups; checked groups, bytes, pixels" in res.output
    assert res.output.strip().splitlines()[-1] == "ok: no leakage found"
    assert "  cyst          8        2        2" in res.output


def test_leaks_exit_two_with_one_line_each(tmp_path: Path) -> None:
    manifest = write_set(tmp_path / "d", leak_patient=True, copy="bytes")
    res = runner.invoke(app, ["data", "check", f"csv:{manifest}", "--no-progress"])
    assert res.exit_code == 2, res.output
    leaks = [line for line in res.output.splitlines() if line.startswith("leak: ")]
    assert len(leaks) == 3  # the patient, and the copy by bytes and by pixels
    assert "leak: patient 'cyst-p0' is in train (1 sample), test (1 sample)" in leaks
    assert res.output.strip().splitlines()[-1] == "LEAKAGE: 3 problem(s) found"


def test_json_and_no_pixels(tmp_path: Path) -> None:
    manifest = write_set(tmp_path / "d", copy="pixels")
    res = runner.invoke(app, ["data", "check", f"csv:{manifest}", "--json", "--no-progress"])
    assert res.exit_code == 2
    out = json.loads(res.stdout)
    assert out["ok"] is False and len(out["leaks"]) == 1 and out["duplicates"][0]["kind"] == "pixels"
    assert out["class_counts"]["test"] == {"cyst": 3, "normal": 2}
    res = runner.invoke(app, ["data", "check", f"csv:{manifest}", "--json", "--no-pixels"])
    assert res.exit_code == 0  # a re-encoded copy is only visible in the pixels
    assert json.loads(res.stdout)["checked"] == ["groups", "bytes"]


def test_show_caps_the_lines(tmp_path: Path) -> None:
    manifest = write_set(tmp_path / "d", leak_patient=True, copy="bytes")
    res = runner.invoke(app, ["data", "check", f"csv:{manifest}", "--show", "1", "--no-progress"])
    assert res.exit_code == 2 and "leak: ... and 2 more (--json lists all)" in res.output


def test_user_errors_exit_one(tmp_path: Path) -> None:
    for spec, pattern in ((f"csv:{tmp_path / 'none.csv'}", "file not found"), ("nope:x", "unknown data source")):
        res = runner.invoke(app, ["data", "check", spec])
        assert res.exit_code == 1 and res.output.startswith("error: ") and pattern in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1


def test_real_breastmnist_duplicate(medmnist_root: Path) -> None:
    res = runner.invoke(app, ["data", "check", "medmnist:breastmnist", "--data-root", str(medmnist_root), "--json"])
    assert res.exit_code == 2
    out = json.loads(res.stdout)
    assert out["leaks"] == ["identical decoded pixels across splits: 'train/000115' (train), 'test/000076' (test) "
                            "[pixels 67d7185086901baf]"]  # fmt: skip
