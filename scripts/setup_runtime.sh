#!/usr/bin/env bash
# Creates .venv-runtime: medunet's torch-free runtime (medunet.runtime) with only numpy, ONNX Runtime, SciPy,
# scikit-image and Pillow, as a hospital or edge machine would have it; the test of the ONNX artefact runs there
# to show that nothing needs torch or MONAI. medunet itself is installed without its dependencies.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
[ -x .venv-runtime/bin/python ] || "$python" -m venv .venv-runtime
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv-runtime/bin/python -m pip install --quiet "numpy>=1.24,<3" "scipy>=1.11,<2" "scikit-image>=0.22,<1" \
    "pillow>=10,<14" "onnxruntime>=1.17,<2"
.venv-runtime/bin/python -m pip install --quiet --no-deps -e .
.venv-runtime/bin/python -c "import medunet.runtime, onnxruntime; print('medunet runtime setup: .venv-runtime ready (onnxruntime', onnxruntime.__version__ + ')')"
