#!/usr/bin/env bash
# Creates .venv-monailabel: the MONAI Label server for apps/monailabel (what 3D Slicer's and OHIF's MONAI Label
# clients talk to). MONAI Label 0.8.5 cannot share medunet's environment: its server imports pydicom-seg, which
# needs pydicom 2 and numpy 1 (medunet needs pydicom 3), and it asks for torchvision and SAM 2, which pull a torch of
# their own choosing. So the server gets this environment, and the app runs medunet from medunet's .venv
# (scripts/setup.sh) in a worker process. MONAI Label is installed without its dependencies; those its server
# imports are listed here. Of ITK it needs only the core and IO modules (its label writer): itk-io and the itk-core it
# depends on, 0.6 GB, instead of the whole of itk, 1.6 GB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
venv=.venv-monailabel
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip="$venv/bin/python -m pip install --quiet"
$venv/bin/python -c "import torch" 2>/dev/null || $pip "${MEDUNET_TORCH:-torch==2.13.0}"
$pip --no-deps "monailabel==0.8.5"
$pip "monai>=1.4,<1.5" "numpy>=1.24,<2" "pydicom>=2.4.4,<3" "pydicom-seg>=0.4.1" "SimpleITK>=2.3,<3" "itk-io>=5.3,<6" "nibabel>=5.2" \
    "uvicorn>=0.29" "fastapi>=0.110.2" "pydantic>=2.7" "pydantic-settings>=2.2.1" "python-dotenv>=1.0.1" \
    "python-multipart>=0.0.9" "httpx>=0.27" "schedule>=1.2.1" "timeloop>=1.0.2" "expiringdict>=1.2.2" \
    "expiring_dict>=1.1" "cachetools>=5.3.3" "watchdog>=4" "pynrrd>=1" "filelock>=3.11" "passlib>=1.7.4" \
    "pyjwt>=2.8" "bcrypt>=4.1.2" "requests>=2.31" "requests-toolbelt>=1" "shapely>=2.0.4" "einops>=0.7" \
    "pyyaml>=6.0.1" "girder-client>=3.2.3" "dicomweb-client[gcp]>=0.59.1" "pynetdicom>=2.0.2,<3" "scikit-learn" \
    "scipy" "psutil" "tqdm" "pillow" "scikit-image"
$venv/bin/python -c "import monailabel.app, monailabel.endpoints.infer; print(f'medunet MONAI Label setup: monailabel {monailabel.__version__} ready in $venv')"
