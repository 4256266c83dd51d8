"""The size arithmetic against a layer-by-layer simulation (an independent reference)."""

from __future__ import annotations

import pytest

from medunet.networks.geometry import AxisGeometry, UNetGeometry, normalize_pool_sizes


def simulate_axis(size: int, pools: tuple[int, ...], conv_loss: int = 4) -> int | None:
    """Walks one axis through every layer; None where a pool sees an indivisible size or a map is empty."""
    skips = []
    for p in pools:
        size -= conv_loss
        if size < 1 or size % p:
            return None
        skips.append(size)
        size //= p
    size -= conv_loss
    if size < 1:
        return None
    for p in reversed(pools):
        size = size * p
        skip = skips.pop()
        if (skip - size) % 2 or skip < size:
            return None
        size -= conv_loss
        if size < 1:
            return None
    return size


POOLS = [(2, 2, 2, 2), (2, 2, 2), (2,), (), (2, 1, 2), (1, 1), (3, 2), (2, 2, 2, 2, 2, 2)]


@pytest.mark.parametrize("pools", POOLS)
def test_axis_geometry_matches_layer_simulation(pools: tuple[int, ...]) -> None:
    axis = AxisGeometry(pools)
    for size in range(1, 1200):
        expected = simulate_axis(size, pools)
        assert axis.is_valid(size) == (expected is not None), size
        if expected is not None:
            assert axis.output_for(size) == expected
            assert size - expected == 2 * axis.margin


@pytest.mark.parametrize("pools", POOLS)
def test_valid_sizes_and_nearest(pools: tuple[int, ...]) -> None:
    axis = AxisGeometry(pools)
    brute = [s for s in range(1, 1200) if simulate_axis(s, pools) is not None]
    assert axis.valid_sizes(1199) == brute
    assert axis.min_input == brute[0]
    for size in range(1, 1100):
        low, high = axis.nearest_valid(size)
        assert high == min(s for s in brute if s >= size)
        below = [s for s in brute if s <= size]
        assert low == (below[-1] if below else None)


@pytest.mark.parametrize("pools", POOLS)
def test_input_size_for_is_smallest_covering_input(pools: tuple[int, ...]) -> None:
    axis = AxisGeometry(pools)
    pairs = [(s, simulate_axis(s, pools)) for s in range(1, 1500)]
    valid = [(s, o) for s, o in pairs if o is not None]
    for out in range(1, 600):
        expected = min(s for s, o in valid if o >= out)
        assert axis.input_size_for(out) == expected


def test_paper_2d_geometry() -> None:
    geo = UNetGeometry.create(spatial_dims=2, depth=5)
    assert geo.output_shape((572, 572)) == (388, 388)
    assert geo.margin == (92, 92)
    assert geo.stride == (16, 16)
    assert geo.input_shape_for((388, 388)) == (572, 572)
    assert geo.input_shape_for((389, 1)) == (588, 188)
    # Valid inputs are 16 k + 124: the relation holds for other sizes too.
    for size, out in [(188, 4), (204, 20), (508, 324), (556, 372), (572, 388), (1004, 820)]:
        assert geo.output_shape((size, size)) == (out, out)
    assert geo.valid_input_sizes(0, 620, 540) == [540, 556, 572, 588, 604, 620]


def test_3d_unet_geometry() -> None:
    geo = UNetGeometry.create(spatial_dims=3, depth=4)
    assert geo.output_shape((132, 132, 116)) == (44, 44, 28)
    assert geo.margin == (44, 44, 44)


def test_anisotropic_geometry_follows_pool_sizes() -> None:
    geo = UNetGeometry.create(spatial_dims=3, depth=4, pool_sizes=((2, 2, 1), (2, 2, 1), (2, 2, 2)))
    assert geo.stride == (8, 8, 2)
    # z axis: one pooling by 2, three levels of convolutions without pooling
    assert geo.axes[2].pools == (1, 1, 2)
    for z in range(1, 200):
        assert geo.axes[2].is_valid(z) == (simulate_axis(z, (1, 1, 2)) is not None)


@pytest.mark.parametrize(
    ("shape", "bad_axis", "low", "high"),
    [((570, 572), 0, "556", "572"), ((572, 100), 1, None, "188"), ((573, 573), 0, "572", "588")],
)
def test_invalid_shape_message_names_nearest_valid_sizes(
    shape: tuple[int, int], bad_axis: int, low: str | None, high: str
) -> None:
    geo = UNetGeometry.create(spatial_dims=2, depth=5)
    assert not geo.is_valid_input_shape(shape)
    with pytest.raises(ValueError, match=f"axis {bad_axis}") as err:
        geo.output_shape(shape)
    message = str(err.value)
    assert high in message
    if low is not None:
        assert f"{low} and {high}" in message


def test_bad_configuration_errors() -> None:
    with pytest.raises(ValueError, match="pool_sizes must have one entry per level"):
        normalize_pool_sizes((2, 2), depth=5, spatial_dims=2)
    with pytest.raises(ValueError, match=r"pool_sizes\[1\]"):
        normalize_pool_sizes(((2, 2), (2, 2, 2)), depth=3, spatial_dims=2)
    with pytest.raises(ValueError, match="spatial dimensions"):
        UNetGeometry.create(2, 3).output_shape((100, 100, 100))
    with pytest.raises(ValueError, match="output size must be >= 1"):
        UNetGeometry.create(2, 3).input_shape_for((0, 10))


def test_layer_shapes_of_paper_network() -> None:
    layers = UNetGeometry.create(2, 5).layer_shapes((572, 572))
    convs = [layer.spatial_shape[0] for layer in layers if layer.kind == "conv"]
    # Fig. 1 of the paper, top to bottom and back up.
    assert convs == [570, 568, 282, 280, 138, 136, 66, 64, 30, 28, 54, 52, 102, 100, 198, 196, 390, 388]
    assert [layer.spatial_shape[0] for layer in layers if layer.kind == "upconv"] == [56, 104, 200, 392]
