"""A bundle segments with one tile: its in-memory inference and its blockwise run (the bundle config and
`medunet blockwise`) plan the same tiles, with the shipped settings and with every overlay's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medunet.apps.blockwise import blockwise_bundle
from medunet.apps.segmenter import inference_bundle
from medunet.cli import blockwise_settings, parse_args
from medunet.inference import plan_tiles

REPO = Path(__file__).resolve().parents[3]
# What of an overlay shapes the tiles; the rest (data lists, training schedules) does not reach a plan.
TILE_SETTINGS = ("output_tile", "features", "pool_sizes")
OVERLAYS = {
    "unet2d": [None, "quickstart", "smoke", "dsb2018_cpu", "isbi2012_cpu"],
    "unet3d": [None, "quickstart", "smoke", "spleen_ct", "spinal_cord_mr", "tcia_brain_mr"],
}
SHAPES = {"unet2d": [(700, 520), (96, 1500)], "unet3d": [(300, 260, 40), (64, 64, 150)]}


def _overlay(name: str | None) -> dict:
    if name is None:
        return {}
    settings = json.loads((REPO / "configs" / f"{name}.json").read_text())
    return {k: v for k, v in settings.items() if k in TILE_SETTINGS}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "model.pt"
    path.write_bytes(b"checked to exist, never loaded: a plan needs only the network's shape")
    return path


@pytest.mark.parametrize(("bundle", "overlay"), [(b, o) for b, names in OVERLAYS.items() for o in names])
def test_in_memory_and_blockwise_plan_the_same_tiles(bundle: str, overlay: str | None, checkpoint: Path) -> None:
    folder, settings = REPO / "bundles" / bundle, {**_overlay(overlay), "device": "cpu"}
    in_memory = inference_bundle(folder, checkpoint, settings)
    network = in_memory.get_parsed_content("network_def")
    inferer = in_memory.get_parsed_content("inferer")
    volume = {"input_volume": str(checkpoint), "output_volume": str(checkpoint.parent / "out.zarr")}
    parsed = parse_args(
        ["blockwise", "--bundle", str(folder), "--checkpoint", str(checkpoint), "--input", volume["input_volume"],
         "--output", volume["output_volume"]]
    )  # fmt: skip
    runs = {
        "blockwise.json": blockwise_bundle(folder, checkpoint, {**settings, **volume}),
        "medunet blockwise": blockwise_bundle(folder, checkpoint, {**blockwise_settings(parsed), **settings}),
    }
    for how, parser in runs.items():
        job = parser.get_parsed_content("blockwise_job")
        for shape in SHAPES[bundle]:
            expected = inferer.plan(shape, network)
            assert job.inferer().plan(shape, network) == expected, f"{bundle} + {overlay}, {how}, image {shape}"
            bundle_tile = network.geometry.input_tile_for(in_memory.get_parsed_content("output_tile"))
            assert expected == plan_tiles(network.geometry, shape, input_tile=bundle_tile)  # the bundle's tile


def test_an_explicit_tile_of_the_blockwise_run_replaces_the_bundles(checkpoint: Path) -> None:
    folder = REPO / "bundles" / "unet2d"
    settings = {"input_volume": str(checkpoint), "output_volume": str(checkpoint.parent / "out.zarr"), "device": "cpu"}
    network = inference_bundle(folder, checkpoint, {"device": "cpu"}).get_parsed_content("network_def")
    by_input = blockwise_bundle(folder, checkpoint, {**settings, "input_tile": [252, 252]})
    by_output = blockwise_bundle(folder, checkpoint, {**settings, "output_tile": [68, 68]})
    for parser in (by_input, by_output):
        assert parser.get_parsed_content("blockwise_job").inferer().plan((500, 500), network).input_tile == (252, 252)


def test_a_bundle_that_resamples_is_refused_unless_spacing_is_null(checkpoint: Path) -> None:
    """brain_tumour_mr resamples to 1 x 1 x 6.5 mm; a blockwise run predicts on the volume's own grid."""
    folder = REPO / "bundles" / "brain_tumour_mr"
    volume = {"input_volume": str(checkpoint), "output_volume": str(checkpoint.parent / "out.zarr"), "device": "cpu"}
    with pytest.raises(ValueError, match=r"spacing \[1\.0, 1\.0, 6\.5\].*--override spacing=null"):
        blockwise_bundle(folder, checkpoint, volume)
    parser = blockwise_bundle(folder, checkpoint, {**volume, "spacing": None})  # resampled by the user beforehand
    assert parser.get_parsed_content("blockwise_job").output == volume["output_volume"]
    assert not (checkpoint.parent / "out.zarr").exists()
    for config in (REPO / "bundles").glob("*/configs/blockwise.json"):  # python -m monai.bundle run checks it too
        initialize = json.loads(config.read_text())["initialize"]
        assert "$medunet.apps.blockwise.refuse_resampling(@spacing)" in initialize, config
