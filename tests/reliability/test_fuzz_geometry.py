"""Property-based tests of the size arithmetic: random shapes, pooling sizes, kernels and depths give either the
documented result or the documented ``ValueError`` (never another exception), and the arithmetic matches the
network. Examples are drawn by hypothesis (``HYPOTHESIS_PROFILE=fuzz`` draws many more, at random)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from medunet.networks import UNetGeometry, ValidUNet
from medunet.networks.geometry import normalize_pool_sizes

dims = st.integers(1, 3)


@st.composite
def geometries(draw: st.DrawFn) -> UNetGeometry:
    spatial_dims = draw(dims)
    depth = draw(st.integers(1, 5))
    pools = draw(st.lists(st.tuples(*[st.integers(1, 3)] * spatial_dims), min_size=depth - 1, max_size=depth - 1))
    kernel = draw(st.sampled_from([1, 3, 5]))
    convs = draw(st.integers(1, 3))
    return UNetGeometry(tuple(pools), spatial_dims, kernel, convs)


junk = st.one_of(
    st.integers(-3, 4), st.floats(allow_nan=True), st.text(max_size=3), st.booleans(), st.none(),
    st.lists(st.integers(-1, 3), max_size=4),
)  # fmt: skip


@given(pool_sizes=st.one_of(st.none(), st.lists(junk, max_size=6), junk), depth=st.integers(-1, 6), spatial_dims=dims)
def test_pool_sizes_are_normalized_or_refused(pool_sizes: Any, depth: int, spatial_dims: int) -> None:
    try:
        pools = normalize_pool_sizes(pool_sizes, depth, spatial_dims)
    except ValueError:
        return
    assert len(pools) == depth - 1
    assert all(len(p) == spatial_dims and all(isinstance(s, int) and s >= 1 for s in p) for p in pools)


@given(geometry=geometries(), data=st.data())
def test_any_input_shape_is_checked_or_refused(geometry: UNetGeometry, data: st.DataObject) -> None:
    shape = data.draw(st.tuples(*[st.integers(-4, 600)] * geometry.spatial_dims))
    try:
        checked = geometry.check_input_shape(shape)
    except ValueError as err:
        message = str(err)
    else:
        message = ""
    if message:
        assert not geometry.is_valid_input_shape(shape)
        assert "valid" in message
        lows, highs = geometry.nearest_valid_input_shapes(shape)
        for axis, (size, low, high) in enumerate(zip(shape, lows, highs, strict=True)):
            assert geometry.axes[axis].is_valid(high)
            assert high >= size
            assert low is None or (geometry.axes[axis].is_valid(low) and low <= size)
        return
    assert checked == tuple(shape)
    out = geometry.output_shape(shape)
    assert all(o >= 1 for o in out)
    assert out == tuple(s - 2 * m for s, m in zip(shape, geometry.margin, strict=True))


@given(geometry=geometries(), data=st.data())
def test_the_input_for_an_output_is_the_smallest_that_covers_it(geometry: UNetGeometry, data: st.DataObject) -> None:
    wanted = data.draw(st.tuples(*[st.integers(1, 300)] * geometry.spatial_dims))
    shape = geometry.input_shape_for(wanted)
    assert geometry.is_valid_input_shape(shape)
    out = geometry.output_shape(shape)
    for axis, (o, w, s) in enumerate(zip(out, wanted, shape, strict=True)):
        assert o >= w
        smaller = s - geometry.stride[axis]
        assert not geometry.axes[axis].is_valid(smaller) or geometry.axes[axis].output_for(smaller) < w


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@given(data=st.data())
def test_the_network_output_has_the_computed_shape(spatial_dims: int, data: st.DataObject) -> None:
    depth = data.draw(st.integers(1, 3))
    pools = data.draw(st.lists(st.tuples(*[st.integers(1, 2)] * spatial_dims), min_size=depth - 1, max_size=depth - 1))
    net = ValidUNet(spatial_dims, 1, 2, features=[2] * depth, pool_sizes=pools or None).eval()
    extra = data.draw(st.tuples(*[st.integers(0, 2)] * spatial_dims))
    shape = tuple(m + e * s for m, e, s in zip(net.geometry.min_input_shape, extra, net.geometry.stride, strict=True))
    with torch.inference_mode():
        out = net(torch.zeros(1, 1, *shape))
    assert tuple(out.shape[2:]) == net.geometry.output_shape(shape)
