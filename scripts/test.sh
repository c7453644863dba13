#!/usr/bin/env bash
# The README's test command: set up .venv, then lint, format check, type check and the default tests
# (the same steps CI runs). Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -euo pipefail
exec bash "$(dirname "$0")/../.ci/run" "$@"
