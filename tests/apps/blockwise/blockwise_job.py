"""A blockwise job run as its own process (the kill tests stop it, or one of its dask workers, with SIGKILL).

Usage: python blockwise_job.py INPUT OUTPUT WORKERS REPORT
"""

from __future__ import annotations

import json
import sys

import torch

from medunet.apps.blockwise import BlockwiseJob, run_blockwise
from medunet.networks import ValidUNet

TILE = (56, 64, 64)
BLOCK = (8, 16, 16)


def network() -> ValidUNet:
    torch.manual_seed(0)
    return ValidUNet(spatial_dims=3, features=(4, 8, 16), dropout=0.0).eval()


def job(source: str, output: str, **kwargs: object) -> BlockwiseJob:
    settings: dict = {"output_mode": "logits", "input_tile": TILE, "block_shape": BLOCK, "scale": 1 / 255,
                      "torch_threads": 1, **kwargs}  # fmt: skip
    return BlockwiseJob(input=source, output=output, **settings)


if __name__ == "__main__":
    source, output, workers, report = sys.argv[1:5]
    result = run_blockwise(job(source, output), network(), n_workers=int(workers), progress=False)
    with open(report, "w") as f:
        json.dump({"computed": result.computed, "skipped": result.skipped, "blocks": result.blocks}, f)
