"""``probe results`` and ``probe report`` over damaged or ambiguous results: bad lines, atomic CSV, JSON errors."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from probe.results import ResultsWarning, append_results
from tests.test_results import ROW

runner = CliRunner()


def _damaged(tmp_path: Path) -> Path:
    """A results folder whose second of three lines is corrupt."""
    file = append_results([replace(ROW, seed=s) for s in range(3)], tmp_path / "results")
    lines = file.read_text().splitlines(keepends=True)
    file.write_text(lines[0] + "{not json\n" + lines[2])
    return file.parent


def test_results_and_report_name_a_bad_line_and_skip_it_on_request(tmp_path: Path) -> None:
    results = str(_damaged(tmp_path))
    res = runner.invoke(app, ["results", results])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert "results.jsonl:2 is not JSON" in res.output
    assert re.search(r"skip[_-]bad[_-]lines", res.output)  # load_results(skip_bad_lines=True) or its CLI flag
    with pytest.warns(ResultsWarning, match="skipped 1 unreadable line"):
        out = runner.invoke(app, ["results", results, "--skip-bad-lines", "--json"])
    assert out.exit_code == 0, out.output
    assert sorted(r["seed"] for r in json.loads(out.stdout)["results"]) == [0, 2]
    with pytest.warns(ResultsWarning, match="skipped 1 unreadable line"):
        rep = runner.invoke(app, ["report", results, "--out", str(tmp_path / "rep"), "--metric", "accuracy",
                                  "--skip-bad-lines", "--json"])  # fmt: skip
    assert rep.exit_code == 0, rep.output
    assert Path(json.loads(rep.stdout)["html"]).is_file()


def test_csv_export_replaces_the_file(tmp_path: Path) -> None:
    results = str(append_results([ROW], tmp_path / "results").parent)
    csv = tmp_path / "rows.csv"
    csv.write_text("old\n")
    before = csv.stat().st_ino
    res = runner.invoke(app, ["results", results, "--metric", "accuracy", "--csv", str(csv)])
    assert res.exit_code == 0, res.output
    assert csv.stat().st_ino != before and "dataset" in csv.read_text().splitlines()[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "rows.csv"]


def test_two_folders_named_alike_are_two_datasets(tmp_path: Path) -> None:
    """Issue 12.3: folder:/a/base and folder:/b/base are reported apart, each under a unique name."""
    from tests.conftest import write_image_folder

    res = str(tmp_path / "results")
    for parent, seed in (("a", 0), ("b", 1)):
        folder = write_image_folder(tmp_path / parent / "base", per_class=3, seed=seed)
        out = runner.invoke(app, ["curve", f"folder:{folder}", "--backbone", "timm:test_vit", "--random-weights",
                                  "--image-size", "32", "--heads", "knn", "--shots", "all", "--seeds", "1",
                                  "--bootstrap", "20", "--store-root", str(tmp_path / "emb"), "--results", res,
                                  "--json"])  # fmt: skip
        assert out.exit_code == 0, out.output
        assert {r["dataset"] for r in json.loads(out.stdout)["results"]} == {"base"}
    rows = json.loads(runner.invoke(app, ["results", res, "--json"]).stdout)["results"]
    assert {r["dataset"] for r in rows} == {"a/base", "b/base"} and {r["dataset_name"] for r in rows} == {"base"}
    assert len({r["dataset_fingerprint"] for r in rows}) == 2
    rep = runner.invoke(app, ["report", res, "--out", str(tmp_path / "rep"), "--json"])
    md = Path(json.loads(rep.stdout)["markdown"]).read_text()
    assert "2 datasets" in md and "## a/base" in md and "## b/base" in md


def test_a_results_file_written_with_head_filters_and_reports(tmp_path: Path) -> None:
    """Rows of results schema 2 name the head column ``head``: ``--head`` filters them and the report reads them."""
    rows = [replace(ROW, head_name=h, seed=s).to_dict() for h in ("knn", "linear") for s in range(2)]
    old = [{("head" if k == "head_name" else k): v for k, v in r.items()} | {"schema": "probe.results/2"} for r in rows]
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    out = runner.invoke(app, ["results", str(folder), "--head", "linear", "--json"])
    assert out.exit_code == 0, out.output
    assert [(r["head_name"], r["seed"]) for r in json.loads(out.stdout)["results"]] == [("linear", 0), ("linear", 1)]
    rep = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "rep"), "--metric", "accuracy",
                              "--head", "knn,linear", "--json"])  # fmt: skip
    assert rep.exit_code == 0, rep.output
    md = Path(json.loads(rep.stdout)["markdown"]).read_text()
    assert "toy · knn" in md and "toy · linear" in md
