#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh), then runs the main job: train on generated data, then segment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${MEDUNET_VENV:-.venv}/bin/activate"
medunet demo --output-dir "${MEDUNET_OUTPUT_DIR:-outputs/demo}" "$@"
