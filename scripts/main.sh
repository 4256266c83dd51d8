#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh), then runs the main job: train the 2D paper network on the generated
# default data (quickstart overlay: a few minutes on a CPU), then segment the generated images with it.
# Outputs go to $MEDUNET_OUTPUT_DIR (default: outputs/). Running it again resumes from the last checkpoint.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${MEDUNET_VENV:-.venv}/bin/activate"
out=${MEDUNET_OUTPUT_DIR:-outputs}
python -m monai.bundle run training \
    --config_file "['bundles/unet2d/configs/train.json','configs/quickstart.json']" \
    --output_dir "$out/unet2d"
# the network width of the quickstart recipe (configs/quickstart.json), which the inference config must match
python -m monai.bundle run inference \
    --config_file bundles/unet2d/configs/inference.json \
    --features "[16, 32, 64, 128, 256]" \
    --input_dir "$out/unet2d/default_data/imagesTr" \
    --output_dir "$out/unet2d_inference" \
    --ckpt_path "$out/unet2d/best_model.pt"
echo "medunet: model and MLflow run in $out/unet2d (mlflow ui --backend-store-uri sqlite:///$out/unet2d/mlflow/mlflow.db),"
echo "medunet: class maps (*_seg.png) and instance labels (*_instances.png) in $out/unet2d_inference, validation overlay in $out/unet2d/val_overlay.png"
