#!/usr/bin/env bash
# The CUDA checks of medunet in one run, on a machine with one CUDA GPU: the CUDA tests, then the cost model, the
# inference benchmark and the precision presets' agreement on CUDA. Results land in benchmarks/results/*_cuda.*;
# with a folder as $1 the JSON results and the logs are also copied there after each step. Needs medunet importable
# (installed, or the repository on PYTHONPATH) and the cases of `python benchmarks/precision_agreement.py --pack DIR`
# in $2 (default .device_data; that step is skipped when they are absent).
set -uo pipefail
out=${1:-}
cases=${2:-.device_data}
export PYTHONUNBUFFERED=1
log=${out:-benchmarks/results}/cuda_run.log
mkdir -p "$(dirname "$log")"
save() { if [ -n "$out" ]; then cp benchmarks/results/*_cuda.json "$out/" 2>/dev/null; fi; }
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
    python3 -m pytest -q -p no:cacheprovider -rs tests/networks/test_unet.py tests/inference/test_precision.py \
        tests/inference/test_overlap_tile.py tests/inference/test_cost.py tests/inference/test_tiling.py 2>&1 | tail -25
    python3 benchmarks/cost_model.py --device cuda 2>&1 | tail -40
    save
    python3 benchmarks/inference.py --device cuda --repeats 3 2>&1 | grep -v "^\[" | tail -60
    save
    if [ -f "$cases/cases.npz" ]; then
        python3 benchmarks/precision_agreement.py --cases "$cases" --device cuda 2>&1 | tail -12
        save
    fi
} 2>&1 | tee "$log"
