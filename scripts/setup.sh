#!/usr/bin/env bash
# Creates the virtual environment .venv (or $MEDUNET_VENV) and installs medunet into it.
#
# torch: an existing torch is kept. Otherwise, where an NVIDIA GPU answers (nvidia-smi), pip's default
# torch (a CUDA build) is installed; on a machine without a GPU, torch==2.13.0, which is a CPU build
# where a local wheel is provided. To choose yourself, set MEDUNET_TORCH to a pip requirement, e.g.
# MEDUNET_TORCH="torch==2.13.0" together with PIP_EXTRA_INDEX_URL pointing at PyTorch's CPU wheel index.
# MEDUNET_EXTRAS: the optional dependencies installed with medunet (default: dev, the tests' and the napari
# plugin's); empty for medunet alone, as scripts/setup_deploy.sh does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "medunet setup: $("$python" --version 2>&1 | head -n 1) found; medunet needs Python 3.11 or newer." >&2
    echo "medunet setup: set PYTHON to a newer interpreter, e.g. PYTHON=python3.11 bash scripts/setup.sh" >&2
    exit 1
fi
venv=${MEDUNET_VENV:-.venv}
extras=${MEDUNET_EXTRAS-dev}
if [ ! -x "$venv/bin/python" ]; then
    # About 3.2 GB once installed (torch alone 0.75 GB), more while pip unpacks: say so before pip fails half-way.
    where=$(cd "$(dirname "$venv")" && pwd)
    free_gb=$(df -Pk "$where" | awk 'NR == 2 {print int($4 / 1048576)}')
    if [ "$free_gb" -lt 5 ]; then
        echo "medunet setup: only ${free_gb} GB free on the disk of $where; creating $venv needs about 5 GB." >&2
        echo "medunet setup: free some space (or set MEDUNET_VENV to a folder on a larger disk) and run it again." >&2
        exit 1
    fi
    "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! python -c "import torch" >/dev/null 2>&1; then
    if [ -n "${MEDUNET_TORCH:-}" ]; then
        spec=$MEDUNET_TORCH
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        spec="torch>=2.4,<2.15"
    else
        spec="torch==2.13.0"
    fi
    echo "medunet setup: installing $spec"
    python -m pip install --quiet "$spec"
fi
python -m pip install --quiet -e ".${extras:+[$extras]}"
python -c "import torch, monai, medunet; print(f'medunet setup: torch {torch.__version__} (CUDA available: {torch.cuda.is_available()}), monai {monai.__version__}')"
