"""``probe knn/linear/fewshot/curve/results/report`` through CliRunner: JSON row schema and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from probe.results import REQUIRED_FIELDS

runner = CliRunner()
ROW_KEYS = REQUIRED_FIELDS
FAST = ["--bootstrap", "50", "--json"]


def _ok(args: list[str]) -> dict:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _fails(args: list[str], pattern: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.output.startswith("error: ") and pattern in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1


def _schema(out: dict) -> list[dict]:
    rows = out["results"]
    assert rows and all(set(r) >= ROW_KEYS for r in rows)
    for r in rows:
        assert isinstance(r["shots"], int) or r["shots"] in ("all", None)
        assert isinstance(r["value"], float) and isinstance(r["params"], dict)
    return rows


def test_knn_linear_fewshot_json(synth_store: str, tmp_path: Path) -> None:
    root = str(Path(synth_store).parents[1])
    results = str(tmp_path / "results")
    common = ["medmnist:synth", "--backbone", "toy", "--store-root", root, "--results", results, *FAST]
    rows = _schema(_ok(["knn", *common, "--k", "5,20"]))
    assert {r["head_name"] for r in rows} == {"knn-k5", "knn-k20"} and {r["shots"] for r in rows} == {"all"}
    rows = _schema(_ok(["linear", *common]))
    assert {r["head_name"] for r in rows} == {"linear"} and rows[0]["params"]["selection"].startswith("val")
    few = [a for a in common if a not in ("--bootstrap", "50")]  # episodes: CI across episodes, no bootstrap
    rows = _schema(_ok(["fewshot", *few, "--shots", "1,5", "--episodes", "3"]))
    assert {(r["protocol"], r["head_name"]) for r in rows} == {("episodes", "prototype")}
    out = _ok(["results", results, "--json", "--head", "prototype"])
    assert {r["head_name"] for r in out["results"]} == {"prototype"}
    res = runner.invoke(app, ["results", results, "--metric", "accuracy", "--csv", str(tmp_path / "r.csv")])
    assert res.exit_code == 0 and "knn-k5" in res.output and (tmp_path / "r.csv").stat().st_size > 0
    out = _ok(["report", results, "--out", str(tmp_path / "rep"), "--json"])
    assert Path(out["html"]).stat().st_size > 0 and all(Path(f).stat().st_size > 0 for f in out["figures"])


def test_curve_extracts_once_then_probes(image_folder: Path, tmp_path: Path) -> None:
    args = [
        "curve",
        f"folder:{image_folder}",
        "--backbone",
        "timm:test_vit",
        "--random-weights",
        "--shots",
        "1,2,all",
        "--seeds",
        "2",
        "--store-root",
        str(tmp_path / "emb"),
        "--results",
        str(tmp_path / "res"),
        *FAST,
    ]
    rows = _schema(_ok(args))
    assert {r["head_name"] for r in rows} == {"knn-k20", "linear", "prototype"}  # one k or several: "knn-k<k>"
    _fails([*args[:-1], "--preprocessing", "zscore"], "--preprocessing 'zscore' is unknown")
    digests = {(r["shots"], r["seed"]): set() for r in rows}
    for r in rows:
        digests[(r["shots"], r["seed"])].add(r["sample_digest"])
    assert all(len(d) == 1 for d in digests.values())  # every head saw the same samples
    before = list((tmp_path / "emb").glob("*/*.zarr"))
    _ok(args)  # second run: the store is reused, not re-extracted
    assert list((tmp_path / "emb").glob("*/*.zarr")) == before


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["knn", "medmnist:synth", "--backbone", "nope"], "no store of medmnist:synth with backbone nope"),
        (["curve", "medmnist:synth", "--seeds", "0"], "--seeds 0"),
        (["curve", "medmnist:synth", "--heads", "svm"], "unknown head 'svm'"),
        (["knn", "medmnist:synth", "--backbone", "toy", "--metrics", "auc"], "unknown metric 'auc'"),
        (["linear", "medmnist:synth", "--backbone", "toy", "--shots", "two"], "--shots value 'two'"),
        (["fewshot", "medmnist:synth", "--backbone", "toy", "--episodes", "0"], "--episodes 0"),
        (["report", "empty"], "no result rows in empty"),
    ],
)
def test_errors_are_one_line(args: list[str], pattern: str, synth_store: str, tmp_path: Path) -> None:
    root = str(Path(synth_store).parents[1])
    extra = ["--store-root", root] if args[0] in ("knn", "linear", "fewshot") else []
    if args[0] == "report":
        (tmp_path / "empty").mkdir()
        args = ["report", str(tmp_path / "empty")]
        pattern = "no result rows in"
    _fails([*args, *extra], pattern)
