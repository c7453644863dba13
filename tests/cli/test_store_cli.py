"""``probe store verify``, ``probe extract --repair`` and errors as JSON with ``--json`` (issue 12, items 4 and 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.test_store_check import _flip, _store

runner = CliRunner()


def test_store_verify_finds_a_flipped_chunk_and_exits_1(tmp_path: Path) -> None:
    path = _store(tmp_path / "s.zarr")
    ok = runner.invoke(app, ["store", "verify", path])
    assert ok.exit_code == 0 and "ok: " in ok.stdout and "CRC32C" in ok.stdout, ok.output
    _flip(tmp_path / "s.zarr/features/gap/c/2/0")
    bad = runner.invoke(app, ["store", "verify", path])
    assert bad.exit_code == 1 and isinstance(bad.exception, SystemExit)
    assert "damaged: features/gap/c/2/0: CRC32C checksum mismatch" in bad.stdout
    assert bad.stderr.startswith("error: ") and "`probe x --repair`" in bad.stderr
    js = runner.invoke(app, ["store", "verify", path, "--json"])
    out = json.loads(js.stdout)
    assert js.exit_code == 1 and not out["ok"] and out["damaged"][0]["key"] == "features/gap/c/2/0"


@pytest.mark.parametrize(
    "args",
    [
        ["store", "info", "{missing}", "--json"],
        ["store", "verify", "{missing}", "--json"],
        ["results", "{missing}", "--json"],
        ["report", "{missing}", "--json"],
        ["knn", "medmnist:synth", "--backbone", "toy", "--store-root", "{missing}", "--json"],
        ["data", "check", "folder:{missing}", "--json"],
    ],
)
def test_json_commands_print_errors_as_json(args: list[str], tmp_path: Path) -> None:
    """Issue 12.7: with --json an error is {"error": ...} on stdout, besides the one line on stderr."""
    res = runner.invoke(app, [a.replace("{missing}", str(tmp_path / "missing")) for a in args])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert json.loads(res.stdout) == {"error": res.stderr.strip().removeprefix("error: ")}


def test_damaged_store_is_one_line_with_json(tmp_path: Path) -> None:
    path = _store(tmp_path / "s.zarr")
    (tmp_path / "s.zarr/labels/c/0").write_bytes(b"\x28\xb5\x2f\xfdgarbage")  # a corrupt zstd frame
    res = runner.invoke(app, ["knn", "medmnist:x", "--backbone", "toy", "--store", path, "--json"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert "chunk labels/c/0 is damaged" in json.loads(res.stdout)["error"]


def test_extract_repair_recomputes_the_damaged_chunk(image_folder: Path, tmp_path: Path) -> None:
    args = ["extract", f"folder:{image_folder}", "--backbone", "timm:test_vit", "--random-weights",
            "--image-size", "32", "--batch-size", "8", "--chunk-rows", "16", "--num-workers", "0",
            "--store-root", str(tmp_path / "emb"), "--no-progress", "--json"]  # fmt: skip
    first = json.loads(runner.invoke(app, args).stdout)
    pooling = next(iter(first["poolings"]))
    _flip(Path(first["store"]) / f"features/{pooling}/c/2/0", at=8, n=16)
    assert runner.invoke(app, ["store", "verify", first["store"]]).exit_code == 1
    res = runner.invoke(app, [*args, "--repair"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["repaired"] == [2] and out["rows_computed"] == 4
    assert runner.invoke(app, ["store", "verify", first["store"]]).exit_code == 0
