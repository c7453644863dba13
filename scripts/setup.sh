#!/usr/bin/env bash
# Create .venv (if missing) and install probe with its development tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Some machines' pip configuration names index folders that do not exist; drop those warnings only.
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
