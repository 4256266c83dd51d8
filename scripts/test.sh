#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh), then runs lint, type checks and the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${MEDUNET_VENV:-.venv}/bin/activate"
ruff check medunet tests benchmarks
ruff format --check medunet tests benchmarks
mypy
python -m pytest "$@"
