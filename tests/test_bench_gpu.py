"""bench/gpu.sh and bench/bench_gpu.py on a machine without CUDA: they parse, render, and stop clearly."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_gpu() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "bench_gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_and_peaks(bench_gpu: ModuleType) -> None:
    args = bench_gpu.parse_args(["--data-root", "/data", "--images", "512", "--skip-cpu-curve"])
    assert (args.data, args.data_root, args.images, args.skip_cpu_curve) == ("medmnist:bloodmnist", "/data", 512, True)
    assert args.out == str(REPO / "docs" / "benchmarks.md") and args.label == "gpu"
    assert bench_gpu.bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert bench_gpu.bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench_gpu.bf16_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bench_gpu.bf16_peak_tflops("Some GPU") is None and bench_gpu.bf16_peak_tflops("Some GPU", 100.0) == 100.0


def test_report_replaces_its_section(bench_gpu: ModuleType, tmp_path: Path) -> None:
    row = {"backbone": "efficientnet_lite0", "model_ips": 9000.0, "pipeline_ips": 8000.0, "ratio": 0.889,
           "gflops_per_image": 0.8, "tflops": 7.2, "peak_fraction": 0.0073, "images": 4096}  # fmt: skip
    lora = {"images_per_second": 300.0, "step_ms": 106.0, "peak_memory_gib": 9.5, "batch": 32.0}
    text = bench_gpu.report("NVIDIA H100", 989.4, [row], {"GPU": 40.0, "CPU": 900.0}, lora)
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nkept\n")
    bench_gpu.write_section(out, "gpu", text)
    bench_gpu.write_section(out, "gpu", text)
    body = out.read_text()
    assert body.count("<!-- bench:gpu:start -->") == 1 and "kept" in body
    assert "| efficientnet_lite0 | 9000 | 8000 | 0.89 | 0.80 | 7.2 | 0.7 % |" in body
    assert "GPU: 40 s, CPU: 900 s" in body and "peak 9.5 GiB" in body


def _no_cuda_env() -> dict[str, str]:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}


def test_bench_script_without_cuda_says_so() -> None:
    run = subprocess.run(
        [sys.executable, "bench/bench_gpu.py", "--check-cuda"],
        cwd=REPO,
        env=_no_cuda_env(),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "no CUDA device" in run.stderr


def test_gpu_sh_without_cuda_stops_before_the_tests() -> None:
    run = subprocess.run(["bash", "bench/gpu.sh"], cwd=REPO, env=_no_cuda_env(), capture_output=True, text=True)
    assert run.returncode == 1
    assert (
        run.stderr.strip().splitlines()[-1]
        == "error: no CUDA device: bench/gpu.sh and bench/bench_gpu.py need a CUDA GPU"
    )
    assert "passed" not in run.stdout and "skipped" not in run.stdout
