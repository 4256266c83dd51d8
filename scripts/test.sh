#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh), then runs lint, type checks and the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# MONAI Deploy App SDK in .venv-deploy for the deployment test (it skips, saying so, where the SDK does not install)
[ -x .venv-deploy/bin/python ] && .venv-deploy/bin/python -c "import monai.deploy.core" 2>/dev/null \
    || bash scripts/setup_deploy.sh || echo "medunet test setup: MONAI Deploy App SDK not installed; its test will skip"
# The torch-free runtime of the ONNX artefact in .venv-runtime (numpy, ONNX Runtime, SciPy, scikit-image only)
[ -x .venv-runtime/bin/python ] && .venv-runtime/bin/python -c "import medunet.runtime, onnxruntime" 2>/dev/null \
    || bash scripts/setup_runtime.sh || echo "medunet test setup: .venv-runtime not created; the torch-free runtime test will skip"
# The MONAI Label server in .venv-monailabel for the test of apps/monailabel (it skips, saying so, where it is missing)
[ -x .venv-monailabel/bin/python ] && .venv-monailabel/bin/python -c "import monailabel.app" 2>/dev/null \
    || bash scripts/setup_monailabel.sh || echo "medunet test setup: MONAI Label not installed; its test will skip"
# System tools for the DICOM SEG / PACS tests: Orthanc (+ DICOMweb plugin), dciodvfy (dicom3tools) and DCMTK's
# clients (echoscu, storescu), which hospitals use to test a DICOM node.
# The napari plugin's tests draw with OpenGL on a virtual X screen: Xvfb (started by pytest-xvfb) and the X libraries
# of Qt 6's xcb platform.
# Installed when running as root with apt; otherwise those tests skip and say what is missing.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=()
    command -v Orthanc >/dev/null 2>&1 || missing+=(orthanc)
    [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
    command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
    command -v echoscu >/dev/null 2>&1 || missing+=(dcmtk)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
    ldconfig -p | grep -q libxcb-cursor.so.0 || missing+=(libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 \
        libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 libxcb-randr0 libxcb-xkb1 \
        libegl1 libgl1 libfontconfig1 libdbus-1-3)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "medunet test setup: installing ${missing[*]}"
        # Keep Debian from starting Orthanc as a system service: the tests run their own, isolated one.
        created_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
        fi
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
            || echo "medunet test setup: could not install ${missing[*]}; the PACS / SEG validation / napari tests will skip"
        [ -z "$created_policy" ] || rm -f /usr/sbin/policy-rc.d
    fi
fi
# shellcheck disable=SC1091
. "${MEDUNET_VENV:-.venv}/bin/activate"
ruff check medunet tests benchmarks apps scripts
ruff format --check medunet tests benchmarks apps scripts
mypy
# Two test processes (pytest-xdist), each test file whole in one of them (its module fixtures made once): much of the
# suite waits on subprocesses, servers and MONAI's import, which two processes overlap on two cores.
# MEDUNET_TEST_WORKERS=0 runs every test in this one process.
python -m pytest -n "${MEDUNET_TEST_WORKERS:-2}" --dist loadfile "$@"
