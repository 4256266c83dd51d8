"""The two bundles' configs: the same wiring, differing only in named settings; no logic in expressions.

Each bundle stays self-contained (the model zoo and MONAI Deploy load one bundle folder), so the shared parts
are copies; this test keeps the copies identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO

BUNDLES = REPO / "bundles"

# The settings in which unet2d and unet3d may differ; everything else in train.json / inference.json is shared.
SETTINGS = {
    "bundle_name",
    "bundle_root",
    "output_dir",
    "input_dir",
    "ckpt_path",
    "default_shape",
    "output_tile",
    "val_output_tile",
    "spatial_dims",
    "features",
    "dropout",
    "norm",
    "intensity_preset",
    "output_ext",
    "write_dicom_seg",
    "write_overlay",
}
# Settings of the network and its data that inference must take over from training, per bundle.
SHARED_WITH_TRAINING = [
    "spatial_dims", "in_channels", "num_classes", "features", "dropout", "norm", "pool_sizes", "spacing",
]  # fmt: skip


def load(bundle: str, name: str) -> dict[str, Any]:
    return json.loads((BUNDLES / bundle / "configs" / name).read_text())


# The settings in which a pretrained 2D bundle's recipe may differ from unet2d's.
RECIPE_SETTINGS = {
    "bundle_name", "output_dir", "dataset_dir", "amp", "epochs", "val_interval", "early_stop_patience",
    "optimizer_name", "learning_rate", "batch_size", "samples_per_image", "output_tile", "val_output_tile",
    "num_classes", "features", "dropout", "label_rule", "instance_split", "instance_min_size",
    "instance_seed_threshold", "instance_seed_min_size", "instance_fill", "weight_w0", "weight_sigma", "weight_binary", "weight_separate",
    "dice_weight", "elastic_prob", "elastic_sigma", "intensity_preset", "weights_dtype", "flip_axes",
}  # fmt: skip
# The settings in which a pretrained 3D bundle's recipe may differ from unet3d's (a multi-series model also names
# its series and input channels, its pooling and its class weights).
RECIPE_SETTINGS_3D = RECIPE_SETTINGS | {
    "channel_series", "label_series", "in_channels", "pool_sizes", "weight_decay", "foreground_ratio",
    "weight_classes", "input_dir", "write_rtstruct", "spacing",
}  # fmt: skip
PRETRAINED = ["nuclei", "em_membranes"]
PRETRAINED_3D = ["brain_tumour_mr"]
ALL = ["unet2d", "unet3d", *PRETRAINED, *PRETRAINED_3D]
PAIRS = [
    ("unet2d", "unet3d", SETTINGS),
    *[("unet2d", bundle, RECIPE_SETTINGS) for bundle in PRETRAINED],
    *[("unet3d", bundle, RECIPE_SETTINGS_3D) for bundle in PRETRAINED_3D],
]


@pytest.mark.parametrize("name", ["train.json", "inference.json"])
@pytest.mark.parametrize(("first", "second", "allowed"), PAIRS, ids=[f"{a}-{b}" for a, b, _ in PAIRS])
def test_bundles_differ_only_in_their_settings(name: str, first: str, second: str, allowed: set[str]) -> None:
    one, other = load(first, name), load(second, name)
    assert list(one) == list(other), "the same keys in the same order"
    differing = {key for key in one if one[key] != other[key]}
    assert differing <= allowed, f"{name}: shared parts differ: {sorted(differing - allowed)}"
    assert "bundle_name" in differing


@pytest.mark.parametrize("bundle", ["unet3d", *PRETRAINED, *PRETRAINED_3D])
@pytest.mark.parametrize(
    "name", ["evaluate.json", "multi_gpu_train.json", "multi_gpu_inference.json", "blockwise.json", "logging.conf"]
)
def test_overlays_are_identical(name: str, bundle: str) -> None:
    assert (BUNDLES / "unet2d" / "configs" / name).read_bytes() == (BUNDLES / bundle / "configs" / name).read_bytes()


@pytest.mark.parametrize("bundle", ALL)
def test_inference_uses_the_trained_network(bundle: str) -> None:
    train, inference = load(bundle, "train.json"), load(bundle, "inference.json")
    assert inference["network_def"] == train["network_def"]
    for key in [*SHARED_WITH_TRAINING, "intensity_preset", "bundle_name", "bundle_root"]:
        assert inference[key] == train[key], key
    assert inference["output_tile"] == train["val_output_tile"]
    assert train["bundle_root"] == "$medunet.engines.bundle_root()"  # the config file's bundle, from any directory
    assert inference["ckpt_path"] == "$@bundle_root + '/models/model.pt'"  # the model-zoo layout


def _expressions(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.startswith("$") else []
    if isinstance(value, dict):
        return [e for v in value.values() for e in _expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in _expressions(v)]
    return []


def logic_in(expression: str) -> bool:
    """An expression that decides rather than wires: a lambda or a conditional."""
    return "lambda" in expression or " if " in expression or " else " in expression


def test_configs_hold_no_logic_in_expressions() -> None:
    files = sorted(BUNDLES.glob("*/configs/*.json")) + sorted((REPO / "configs").glob("*.json"))
    assert len(files) >= 14
    found = [
        f"{f.relative_to(REPO)}: {e}" for f in files for e in _expressions(json.loads(f.read_text())) if logic_in(e)
    ]
    assert not found, "move this logic into tested Python (medunet.engines):\n" + "\n".join(found)


def test_logic_check_flags_lambdas_and_conditionals() -> None:
    assert logic_in("$lambda epoch: 1.0 - epoch / @epochs")
    assert logic_in("$@train#handlers if @rank == 0 else @train#handlers[:2]")
    assert not logic_in("$medunet.engines.run_name(@bundle_name, @output_dir)")


def test_metadata_names_its_bundle() -> None:
    assert sorted(ALL) == sorted(p.name for p in BUNDLES.iterdir() if (p / "configs").is_dir()), "every bundle here"
    for bundle in ALL:
        assert load(bundle, "metadata.json")["name"] == f"medunet {bundle}"


def test_main_job_infers_with_the_width_it_trained() -> None:
    """scripts/main.sh trains with configs/quickstart.json and must give inference the same network width."""
    features = json.loads((REPO / "configs" / "quickstart.json").read_text())["features"]
    script = (REPO / "scripts" / "main.sh").read_text()
    assert f'--features "{features}"' in script


def _targets(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["_target_"]] if isinstance(value.get("_target_"), str) else []
        return own + [t for v in value.values() for t in _targets(v)]
    if isinstance(value, list):
        return [t for v in value for t in _targets(v)]
    return []


def test_images_are_saved_atomically() -> None:
    """MONAI's SaveImaged writes in place: a killed inference would leave a half-written file under the output's
    name. The bundles use medunet's, which writes through a temporary file."""
    files = sorted(BUNDLES.glob("*/configs/*.json")) + sorted((REPO / "configs").glob("*.json"))
    in_place = [f"{f.relative_to(REPO)}" for f in files if "SaveImaged" in _targets(json.loads(f.read_text()))]
    assert not in_place, "use medunet.transforms.SaveImaged in " + ", ".join(in_place)
    assert "medunet.transforms.SaveImaged" in _targets(load("unet2d", "inference.json"))


@pytest.mark.parametrize("bundle", ["unet2d", "unet3d"])
def test_series_selection_reaches_the_data_list_and_the_loader(bundle: str, tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    from medunet.data.dicom import write_dicom_series

    for name, modality in (("t1", "MR"), ("ct", "CT")):
        write_dicom_series(np.zeros((8, 8, 3), np.float32), tmp_path / name, modality=modality)
    parser = ConfigParser()
    parser.read_config(BUNDLES / bundle / "configs" / "inference.json")
    parser.update({"input_dir": str(tmp_path), "modality": "CT"})  # what --input_dir ... --modality CT sets
    assert parser.get_parsed_content("datalist") == [{"image": str(tmp_path / "ct")}]
    loader = parser.get_parsed_content("preprocessing").transforms[0]
    assert loader.load_kwargs == {"series_uid": None, "modality": "CT", "description": None, "channels": None}


def test_channel_series_make_a_study_one_multi_channel_case(tmp_path: Path) -> None:
    """--channel_series (one pattern per input channel) reaches the data list, the loader and the channel check."""
    from monai.bundle import ConfigParser

    from medunet.data.dicom import write_dicom_series

    volume = np.arange(8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3)
    for name in ("T1post", "FLAIRreg", "ADC"):
        write_dicom_series(volume, tmp_path / "study" / name, modality="MR", rescale=(1.0, 0.0),
                           series_description=name, study_uid="1.2.3", frame_of_reference_uid="1.2.3.9")  # fmt: skip
    parser = ConfigParser()
    parser.read_config(BUNDLES / "unet3d" / "configs" / "inference.json")
    parser.update({"input_dir": str(tmp_path), "channel_series": ["(?i)t1post", "(?i)flair"], "in_channels": 2})
    datalist = parser.get_parsed_content("datalist")
    assert datalist == [{"image": str(tmp_path / "study")}]
    transforms = parser.get_parsed_content("preprocessing").transforms
    assert transforms[0].load_kwargs["channels"] == ["(?i)t1post", "(?i)flair"]
    case = transforms[0](datalist[0])
    for transform in transforms[1:3]:  # AddChanneld, ToGrayscaled: the two channels pass
        case = transform(case)
    assert tuple(case["image"].shape) == (2, 8, 8, 3)
    one_channel = transforms[2].__class__("image", in_channels=3)
    with pytest.raises(ValueError, match=r"the image has 2 channel\(s\), the network takes in_channels=3"):
        one_channel(case)


def test_channel_series_must_match_in_channels() -> None:
    from monai.bundle import ConfigParser

    from medunet.engines.settings import SettingsError, check_settings

    parser = ConfigParser()
    parser.read_config(BUNDLES / "unet3d" / "configs" / "train.json")
    parser.update({"channel_series": ["(?i)t1post", "(?i)flair"], "label_series": "(?i)mask"})
    with pytest.raises(SettingsError, match=r"channel_series has 2 pattern\(s\) .* in_channels=1"):
        check_settings(parser)
    parser.update({"channel_series": None, "label_series": "(?i)mask"})
    with pytest.raises(SettingsError, match="label_series='\\(\\?i\\)mask' names a study's mask series; it needs"):
        check_settings(parser)
