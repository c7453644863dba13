#!/usr/bin/env bash
# The GPU check: the gpu-marked tests, then GPU figures into docs/benchmarks.md (bench/bench_gpu.py).
# Run from anywhere on a CUDA machine: bash bench/gpu.sh [bench_gpu.py options, e.g. --data-root DIR]
# Without a CUDA device it stops before anything else with "no CUDA device" (exit code 1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
"$PY" bench/bench_gpu.py --check-cuda
"$PY" -m pytest -m gpu -p no:cacheprovider -q
"$PY" bench/bench_gpu.py "$@"
