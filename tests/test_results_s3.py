"""A results folder on object storage (loopback moto S3): one object per append, read back whole, reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import BUCKET, cli_ok

pytest.importorskip("moto")
pytest.importorskip("s3fs")
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

runner = CliRunner()


def test_curves_append_to_a_results_folder_in_a_bucket(
    aws: dict[str, str], image_folder: Path, tiny_vit_weights: Path, tmp_path: Path
) -> None:
    import s3fs

    from probe.results import append_results, load_results, read_rows

    url = f"s3://{BUCKET}/team/results"
    common = [f"folder:{image_folder}", "--backbone", "timm:test_vit", "--weights", str(tiny_vit_weights)]
    common += ["--store-root", str(tmp_path / "emb"), "--results", url, "--heads", "prototype", "--bootstrap", "0"]
    out = cli_ok(["curve", *common, "--shots", "1,all", "--seeds", "2"])
    assert f"rows to {url}; `probe report {url}`" in out  # the folder, which holds every run's objects
    cli_ok(["curve", *common, "--shots", "2", "--seeds", "1"])
    objects = s3fs.S3FileSystem().ls(f"{BUCKET}/team/results")
    assert len(objects) == 2 and all(o.rsplit("/", 1)[1].startswith("results-") for o in objects)  # one per run

    rows = json.loads(cli_ok(["results", url, "--json"]))["results"]
    assert sorted({str(r["shots"]) for r in rows}) == ["1", "2", "all"]
    frame = load_results(url)
    assert len(frame) == len(rows) and set(frame["head_name"]) == {"prototype"}
    assert append_results([], url) == url and len(s3fs.S3FileSystem().ls(f"{BUCKET}/team/results")) == 2  # no rows
    one = f"s3://{objects[0]}"
    assert 0 < len(read_rows(one)) < len(rows)  # a single object reads alone

    out = tmp_path / "report"
    cli_ok(["report", url, "--out", str(out), "--formats", "svg"])
    assert "prototype" in (out / "report.md").read_text()
    assert not Path("s3:").exists()  # nothing was written to a local folder named after the URL


def test_results_urls_fail_in_one_line_before_any_work(
    aws: dict[str, str], image_folder: Path, tiny_vit_weights: Path, tmp_path: Path
) -> None:
    from probe.errors import ResultsError
    from probe.results import append_results, check_results_location, read_rows

    with pytest.raises(ResultsError, match=r"objects cannot be appended to; pass the folder URL \(s3://b/r/\)"):
        append_results([], "s3://b/r/results.jsonl")
    with pytest.raises(ResultsError, match=r"bucket 'no-such-bucket' of the results folder \(--results=s3://no-such"):
        check_results_location("s3://no-such-bucket/r")
    with pytest.raises(ResultsError, match=r"no result rows in s3://" + BUCKET + "/empty"):
        read_rows(f"s3://{BUCKET}/empty")
    res = runner.invoke(app, ["results", "s3://no-such-bucket/r"])
    assert res.exit_code == 1 and res.output.count("error:") == 1, res.output
    emb = tmp_path / "emb"
    args = ["curve", f"folder:{image_folder}", "--backbone", "timm:test_vit", "--weights", str(tiny_vit_weights)]
    res = runner.invoke(app, [*args, "--store-root", str(emb), "--results", "s3://no-such-bucket/r"])
    assert res.exit_code == 1 and "does not exist" in res.output and not emb.exists(), res.output  # nothing embedded
