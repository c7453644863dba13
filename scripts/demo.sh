#!/usr/bin/env bash
# The README's main-job command: set up, then extract BloodMNIST with the real EfficientNet-Lite0
# weights into the default store (embeddings/). Data: PROBE_DATA_ROOT, else ../shared/data/medmnist
# when present, else the cache / official download. Running it again is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${PROBE_DATA_ROOT:-}" ] && [ -f ../shared/data/medmnist/bloodmnist.npz ]; then
  export PROBE_DATA_ROOT="$(cd ../shared/data/medmnist && pwd)"
fi
.venv/bin/probe extract medmnist:bloodmnist --backbone efficientnet_lite0 "$@"
.venv/bin/probe store ls
