"""The ``probe`` CLI through typer's CliRunner: JSON schemas, no-op reruns and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()
EXTRACT_KEYS = {"store", "rows", "complete", "poolings", "fingerprint", "resumed_from", "seconds", "images_per_second"}


def _ok(args: list[str]) -> dict:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _fails(args: list[str], pattern: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert pattern in res.output, res.output
    # a clean exit through typer.Exit, not an uncaught exception (which would print a traceback)
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert len(res.output.strip().splitlines()) == 1 and res.output.startswith("error: ")


def test_models_json_lists_the_seed_families() -> None:
    out = _ok(["models", "--json"])
    names = {m["name"] for m in out["models"]}
    assert {
        "efficientnet_lite0",
        "dinov2_vitb14",
        "dinov2_vitg14_reg",
        "mae_vitb16",
        "aimv2_large",
        "clip_vitb16",
        "sam_vitb",
        "eva02_base",
        "rad_dino",
    } <= names
    lite = next(m for m in out["models"] if m["name"] == "efficientnet_lite0")
    assert lite["poolings"] == {"gap": 1280} and lite["license"] == "Apache-2.0"


def test_extract_json_noop_and_store_commands(medmnist_root: Path, tmp_path: Path) -> None:
    args = [
        "extract",
        "medmnist:breastmnist",
        "--data-root",
        str(medmnist_root),
        "--limit",
        "10",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--store-root",
        str(tmp_path),
        "--json",
        "--no-progress",
    ]
    out = _ok(args)
    assert set(out) >= EXTRACT_KEYS
    assert out["rows"] == 30 and out["complete"] and out["poolings"] == {"gap": 1280} and out["resumed_from"] == 0
    again = _ok(args)
    assert again["noop"] and again["store"] == out["store"] and again["fingerprint"] == out["fingerprint"]
    prose = runner.invoke(app, [*args[:-2], "--no-progress"])
    assert "already complete, nothing to do" in prose.stdout
    listed = _ok(["store", "ls", str(tmp_path), "--json"])["stores"]
    assert [s["path"] for s in listed] == [out["store"]] and listed[0]["complete"]
    info = _ok(["store", "info", out["store"], "--json"])
    assert info["fingerprint"] == out["fingerprint"] and info["split_counts"] == {"train": 10, "val": 10, "test": 10}
    assert info["backbone"]["weights_fingerprint"].startswith("sha256:")
    assert {"torch", "timm", "zarr"} <= set(info["versions"])


def test_extract_folder_with_weights_file(image_folder: Path, tiny_vit_weights: Path, tmp_path: Path) -> None:
    out = _ok(
        [
            "extract",
            f"folder:{image_folder}",
            "--backbone",
            "timm:test_vit",
            "--weights",
            str(tiny_vit_weights),
            "--pooling",
            "cls,mean,cls+mean",
            "--image-size",
            "32",
            "--resolution",
            "pad",
            "--num-workers",
            "1",
            "--store-root",
            str(tmp_path),
            "--json",
            "--no-progress",
        ]
    )
    assert out["rows"] == 36 and set(out["poolings"]) == {"cls", "mean", "cls+mean"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["extract", "medmnist:breastmnist", "--backbone", "efficientnet_lite1"], "did you mean efficientnet_lite0"),
        (["extract", "imagenet:val"], "unknown data source 'imagenet:val'"),
        (["extract", "medmnist:breastmnist", "--data-root", "{tmp}"], "breastmnist.npz not found"),
        (["extract", "medmnist:breastmnist", "--batch-size", "0"], "--batch-size 0 is invalid"),
        (["extract", "folder:{tmp}/none"], "not a folder"),
        (["store", "info", "{tmp}/none.zarr"], "no embedding store at"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str, tmp_path: Path) -> None:
    _fails([a.replace("{tmp}", str(tmp_path)) for a in args], message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_request_without_cuda(image_folder: Path) -> None:
    _fails(["extract", f"folder:{image_folder}", "--device", "cuda"], "CUDA is not available here; use --device cpu")


def test_md5_mismatch_and_unwritable_root(medmnist_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "breastmnist.npz").write_bytes((medmnist_root / "breastmnist.npz").read_bytes()[:-10])
    _fails(["extract", "medmnist:breastmnist", "--data-root", str(bad)], "does not match the official")
    (tmp_path / "f").write_text("x")
    _fails(
        [
            "extract",
            "medmnist:breastmnist",
            "--data-root",
            str(medmnist_root),
            "--store-root",
            str(tmp_path / "f" / "x"),
        ],
        "is not writable",
    )


def test_corrupt_image_error_and_skip(image_folder: Path, tmp_path: Path) -> None:
    (image_folder / "val" / "normal" / "normal_001.png").write_bytes(b"\x89PNG broken")
    base = [
        "extract",
        f"folder:{image_folder}",
        "--backbone",
        "timm:test_vit",
        "--random-weights",
        "--image-size",
        "32",
        "--store-root",
        str(tmp_path),
        "--no-progress",
    ]
    _fails(base, "sample 'val/normal/normal_001.png'")
    out = _ok([*base, "--on-error", "skip", "--json"])
    assert out["skipped"] == 1 and out["complete"]
