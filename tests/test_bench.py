"""The bench scripts run as documented (``python bench/bench_<x>.py``): argument parsing and a tiny workload.

Each runs in a fresh process exactly as a user would start it, so a refactor that breaks an import,
a spawned scikit-learn child or a renamed library call fails here instead of in the next benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MEDMNIST, gaussian_features, write_feature_store, write_image_folder

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = (
    "bench_extract",
    "bench_probe",
    "bench_semisup",
    "bench_finetune",
    "bench_cli",
    "bench_preprocessing",
    "bench_scale",
    "bench_dense",
)


def _run(script: str, *args: str, tmp: Path) -> str:
    env = {**os.environ, "PROBE_CACHE_DIR": str(tmp / "cache"), "HF_HUB_OFFLINE": "1", "PROBE_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)  # the script itself must find this checkout's probe package
    res = subprocess.run(
        [sys.executable, f"bench/{script}.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, f"{script} {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def test_no_script_shadows_a_package() -> None:
    stems = {p.stem for p in (REPO / "bench").glob("*.py")} - {"_shared"}
    assert set(SCRIPTS) <= stems and all(stem.startswith("bench_") for stem in stems)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script: str, tmp_path: Path) -> None:
    assert "usage:" in _run(script, "--help", tmp=tmp_path)


def test_extract_quick(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "imgs", per_class=4)
    out = tmp_path / "bench.md"
    _run("bench_extract", "--quick", "--data", f"folder:{folder}", "--out", str(out), tmp=tmp_path)
    assert "## Extraction (`bench/bench_extract.py`, extract)" in out.read_text()


def test_probe_quick_spawns_scikit_learn_children(tmp_path: Path) -> None:
    X, y, s = gaussian_features({"train": 20, "val": 5, "test": 10}, n_classes=3, dim=8)
    write_feature_store(tmp_path / "emb", X, y, s)
    out = tmp_path / "bench.md"
    _run("bench_probe", "--quick", "--data", "medmnist:synth", "--backbone", "toy", "--store-root",
         str(tmp_path / "emb"), "--device", "cpu", "--out", str(out), tmp=tmp_path)  # fmt: skip
    text = out.read_text()
    assert "few-shot sweep" in text and "full-data C grid" in text and "k=20" in text


def test_semisup_tiny(tmp_path: Path) -> None:
    X, y, s = gaussian_features({"train": 20, "val": 5, "test": 10}, n_classes=3, dim=8)
    store = write_feature_store(tmp_path / "emb", X, y, s)
    out = tmp_path / "bench.md"
    _run("bench_semisup", "--store", store, "--shots", "1,2", "--seeds", "2", "--skip-sensitivity",
         "--out", str(out), tmp=tmp_path)  # fmt: skip
    assert "## Semi-supervised probing (`bench/bench_semisup.py`, semisup)" in out.read_text()


def test_preprocessing_quick(tmp_path: Path) -> None:
    X, y, s = gaussian_features({"train": 20, "val": 5, "test": 10}, n_classes=3, dim=8)
    store = write_feature_store(tmp_path / "emb", X, y, s)
    out = tmp_path / "bench.md"
    _run("bench_preprocessing", "--quick", "--store", store, "--out", str(out), tmp=tmp_path)
    text = out.read_text()
    assert "## Few-shot feature preprocessing" in text and "| 1 | **mean** |" in text and "`pool-centre-l2`" in text


def test_finetune_quick(tmp_path: Path) -> None:
    if not (MEDMNIST / "breastmnist.npz").is_file():
        pytest.skip(f"MedMNIST files not found in {MEDMNIST}")
    out = tmp_path / "docs" / "bench.md"
    _run("bench_finetune", "--quick", "--datasets", "breastmnist", "--data-root", str(MEDMNIST), "--device", "cpu",
         "--work", str(tmp_path / "work"), "--out", str(out), tmp=tmp_path)  # fmt: skip
    assert "| breastmnist | finetune-lora | 2 |" in out.read_text()


def test_cli_quick(tmp_path: Path) -> None:
    assert "probe --help" in _run("bench_cli", "--quick", tmp=tmp_path)


@pytest.mark.slow  # ~55 s: three extractions, torchrun and an S3 server
def test_scale_quick(tmp_path: Path) -> None:
    pytest.importorskip("moto")
    folder = write_image_folder(tmp_path / "imgs", per_class=4)
    out = tmp_path / "bench.md"
    _run("bench_scale", "--quick", "--data", f"folder:{folder}", "--out", str(out), tmp=tmp_path)
    text = out.read_text()
    assert "## Scaling out (`bench/bench_scale.py`, scale)" in text and "bit-identical" in text
    assert "| s3 |" in text and "fast / exact" in text


def test_dense_quick(tmp_path: Path) -> None:
    out = _run("bench_dense", "--quick", "--random", tmp=tmp_path)
    assert "seg-linear sweep" in out and "| all |" in out
