"""Tile arithmetic and the planner: tiles on the pooling grid, fewest tiles, the budget respected."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medunet.inference import BlockGrid, TileCostModel, placement, plan_axis_starts, plan_tiles
from medunet.networks import UNetGeometry, ValidUNet


def test_plan_covers_image_on_grid_with_fewest_tiles() -> None:
    sizes, outs, strides = [1, 15, 16, 17, 100, 388, 389, 700, 2048], [16, 36, 100, 388], [1, 8, 16]
    for size, out, stride in itertools.product(sizes, outs, strides):
        starts = plan_axis_starts(size, out, stride)
        assert all(s % stride == 0 for s in starts)
        assert starts == sorted(set(starts))
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s : s + out] = True
        assert covered.all()
        assert starts[-1] < size
        # Fewest aligned tiles: the last must start at or after size - out, consecutive ones at most
        # floor(out / stride) strides apart.
        last = -(-(size - out) // stride) * stride
        fewest = 1 if out >= size else 1 + -(-last // ((out // stride) * stride))
        assert len(starts) == fewest


def test_planner_respects_budget_and_prefers_even_division() -> None:
    net = ValidUNet(2, 1, 3, features=(16, 32, 64, 128, 256))
    geo = net.geometry
    cost = TileCostModel.for_network(net)
    budget = 300 * 1024**2
    plan = plan_tiles(geo, (2048, 2048), cost=cost, memory_budget=budget)
    assert plan.num_tiles > 1
    assert cost.peak_bytes(plan.input_tile) <= budget
    # little waste: the tiles cover the image with less than one stride of overrun per axis
    for starts, out, size, stride in zip(plan.starts, plan.output_tile, plan.image_shape, geo.stride):
        assert starts[-1] + out - size < stride
    # the least total arithmetic among the tiles that fit: no fitting candidate of this plan's kind is cheaper
    total = plan.num_tiles * cost.macs(plan.input_tile)
    for other in ((444, 444), (604, 604), (572, 700)):
        if cost.peak_bytes(other) <= budget:
            n = np.prod([len(plan_axis_starts(2048, t - 2 * m, p)) for t, m, p in zip(other, geo.margin, geo.stride)])
            assert total <= n * cost.macs(other)
    unlimited = plan_tiles(geo, (2048, 2048), cost=cost, memory_budget=10**15)
    assert unlimited.num_tiles == 1
    with pytest.raises(ValueError, match="memory_budget=1000 bytes is too small"):
        plan_tiles(geo, (2048, 2048), cost=cost, memory_budget=1000)


def test_input_tile_and_whole_image_plans() -> None:
    geo = UNetGeometry.create(2, 3)
    whole = plan_tiles(geo, (50, 70))
    assert whole.num_tiles == 1
    assert whole.input_tile == geo.input_shape_for((50, 70))
    fixed = plan_tiles(geo, (100, 70), input_tile=(60, -1))
    assert fixed.input_tile == (60, geo.input_shape_for((50, 70))[1])
    with pytest.raises(ValueError, match=r"input_tile \(61, 60\) is not a valid input tile"):
        plan_tiles(geo, (100, 70), input_tile=(61, 60))
    with pytest.raises(ValueError, match="another geometry"):
        plan_tiles(UNetGeometry.create(2, 4), (100, 70), cost=TileCostModel(geo, (2, 4, 8)), memory_budget=10**9)


def test_region_tiles_lie_on_the_whole_images_grid_and_cover_the_region() -> None:
    geo = UNetGeometry.create(2, 4)
    plan = plan_tiles(geo, (300, 250), input_tile=(124, 156))
    for start, size in [((0, 0), (300, 250)), ((37, 101), (50, 9)), ((299, 249), (1, 1))]:
        starts = plan.region_starts(start, size)
        low, high = plan.context(starts)
        for axis, (axis_starts, s, n) in enumerate(zip(starts, start, size)):
            assert all(t % plan.stride[axis] == 0 for t in axis_starts)
            covered = set().union(*(range(t, t + plan.output_tile[axis]) for t in axis_starts))
            assert set(range(s, s + n)) <= covered
            assert low[axis] == axis_starts[0] - plan.margin[axis]
            assert high[axis] == axis_starts[-1] - plan.margin[axis] + plan.input_tile[axis]
    assert plan.region_starts((0, 0), (300, 250)) == plan.starts  # the whole image: the plan's own tiles


def test_placement_clips_a_tile_to_its_region() -> None:
    dst, src = placement((32, 0), (40, 40), (50, 10), (30, 20))
    assert (dst, src) == ([slice(0, 22), slice(0, 20)], [slice(18, 40), slice(10, 30)])


def test_block_grid_covers_the_image_once() -> None:
    grid = BlockGrid((10, 7), (4, 4))
    blocks = grid.blocks()
    assert len(blocks) == len(grid) == 6
    seen = np.zeros((10, 7), int)
    for start, size in blocks:
        seen[grid.slices(start, size)] += 1
    assert (seen == 1).all()
    assert blocks[-1] == ((8, 4), (2, 3))
    with pytest.raises(ValueError, match="one positive entry per axis"):
        BlockGrid((10, 7), (4,))


def test_default_block_is_one_tile_on_the_grid() -> None:
    geo = UNetGeometry.create(2, 4)
    plan = plan_tiles(geo, (300, 100), input_tile=(124, 124))
    assert (plan.output_tile, plan.stride) == ((36, 36), (8, 8))
    assert plan.default_block_shape() == (32, 32)  # the output tile rounded down to the stride


def test_flip_subsets_start_with_no_flip_and_cover_every_combination() -> None:
    from medunet.inference.tiling import flip_subsets

    assert flip_subsets(()) == [()]
    assert flip_subsets((0, 2)) == [(), (0,), (2,), (0, 2)]
    assert len(flip_subsets((0, 1, 2))) == 8
