"""The blockwise job: what identifies its output, its block checks, its intensity and device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medunet.apps.blockwise.job import BlockPlan, BlockwiseJob, check_blocks, job_record, network_fingerprint
from medunet.inference import BlockGrid, plan_tiles
from medunet.networks import ValidUNet


def _plan(job: BlockwiseJob) -> BlockPlan:
    net = ValidUNet(spatial_dims=3, features=(4, 8, 16), dropout=0.0)
    tile_plan = job.inferer().plan((40, 40, 40), net)
    return BlockPlan(job, tile_plan, BlockGrid((40, 40, 40), tile_plan.default_block_shape()), 2)


def test_the_record_names_the_computation_not_where_it_ran(tmp_path) -> None:
    job = BlockwiseJob(input=str(tmp_path / "in.zarr"), output="a.zarr", output_tile=(20, 20, 20), torch_threads=3)
    record = job_record(_plan(job), "abc")
    elsewhere = job_record(_plan(BlockwiseJob(**{**job.__dict__, "output": "b.zarr", "torch_threads": 1})), "abc")
    assert record == elsewhere  # another output path or thread count resumes the same job
    assert record["input_tile"] == [60, 60, 60]  # the tile actually used
    assert record["output_tile"] is None
    assert record["input"] == str((tmp_path / "in.zarr").resolve())
    by_input = job_record(_plan(BlockwiseJob(**{**job.__dict__, "output_tile": None, "input_tile": (60,) * 3})), "abc")
    assert by_input == record  # the same tile, however it was given
    assert job_record(_plan(job), "other weights") != record
    assert job_record(_plan(BlockwiseJob(**{**job.__dict__, "scale": 0.5})), "abc") != record


def test_blocks_must_lie_on_the_grid_and_hold_whole_chunks() -> None:
    check_blocks((16, 32), (16, 16), (8, 8), 2)
    with pytest.raises(ValueError, match=r"not on the network's pooling grid .* e\.g\. \(16, 32\)"):
        check_blocks((16, 30), (16, 30), (8, 8), 2)
    with pytest.raises(ValueError, match="not a multiple of the output chunks"):
        check_blocks((16, 32), (16, 24), (8, 8), 2)
    with pytest.raises(ValueError, match="need 2 entries"):
        check_blocks((16,), (16,), (8, 8), 2)


def test_intensity_device_and_fingerprint() -> None:
    job = BlockwiseJob(input="", output="", scale=0.5, offset=-1.0, clip=(-0.5, 0.5), device="auto")
    assert np.array_equal(job.intensity(np.array([0, 2, 4], np.uint8)), np.array([-0.5, 0.0, 0.5], np.float32))
    assert job.network_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert BlockwiseJob(input="", output="", device="cpu").network_device() == torch.device("cpu")
    torch.manual_seed(0)
    a, b = ValidUNet(spatial_dims=2, features=(2, 4)), ValidUNet(spatial_dims=2, features=(2, 4))
    assert network_fingerprint(a) == network_fingerprint(a) != network_fingerprint(b)
    assert plan_tiles(a.geometry, (30, 30)).image_shape == (30, 30)
