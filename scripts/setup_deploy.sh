#!/usr/bin/env bash
# Creates .venv-deploy: medunet with the MONAI Deploy App SDK, for the test that runs medunet's bundle in a
# MONAI Deploy application. The SDK imports Holoscan into every process that scans the `monai` namespace
# (MONAI's config parser does), so it gets an environment of its own instead of medunet's .venv: medunet
# without the tests' extras (napari and Qt are not needed here).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MEDUNET_VENV=.venv-deploy MEDUNET_EXTRAS="" bash scripts/setup.sh >/dev/null
PIP_DISABLE_PIP_VERSION_CHECK=1 .venv-deploy/bin/python -m pip install --quiet "monai-deploy-app-sdk>=4,<5"
.venv-deploy/bin/python -c "import monai.deploy.core, medunet; print('medunet deploy setup: MONAI Deploy App SDK ready in .venv-deploy')" 2>/dev/null
