"""The bundles' top-level settings: every one of every config is in the schema, and each class of setting converts
what people write and refuses the rest with a message naming the setting, the value and the valid values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from monai.bundle import ConfigParser

from medunet.engines.settings import SETTINGS, SettingsError, check_settings, resolve_device
from tests.conftest import REPO

CONFIG_FILES = sorted([*REPO.glob("bundles/*/configs/*.json"), *REPO.glob("configs/*.json")], key=lambda p: str(p))
CONFIG_FILES = [p for p in CONFIG_FILES if p.name != "metadata.json"]

# Top-level entries that wire objects together (components, expressions over other entries, workflow steps); the
# settings people change are in SETTINGS. A new top-level entry must be one or the other.
WIRING = {
    "imports", "bundle_root", "is_not_rank0", "max_epochs", "tracking_uri", "run_name", "network_def", "network",
    "geometry", "datalist", "loss", "optimizer", "lr_scheduler", "rng_state", "checkpoint_dict", "load_transforms",
    "train", "validate", "early_stop", "checkpoint_saver", "checkpoint_loader", "mlflow", "initialize", "run",
    "training", "evaluating", "inference", "finalize", "preprocessing", "dataset", "dataloader", "inferer",
    "postprocessing", "handlers", "evaluator", "blockwise_job", "blockwise_network", "blockwise_report", "rank", "world_size", "cases",
    "audit",
}  # fmt: skip


def _top_level(path: Path) -> dict[str, Any]:
    """A config's top-level entries; ``a#b`` overrides of nested entries belong to ``a``."""
    return {key.split("#")[0]: value for key, value in json.loads(path.read_text()).items()}


def test_every_top_level_entry_of_every_config_is_a_checked_setting_or_wiring() -> None:
    unclassified = {
        f"{path.relative_to(REPO)}: {key}"
        for path in CONFIG_FILES
        for key in _top_level(path)
        if key not in SETTINGS and key not in WIRING
    }
    assert not unclassified, "add these to medunet.engines.settings.SETTINGS (or to WIRING here)"
    assert not set(SETTINGS) & WIRING


BOOLEANS_IN_CONFIGS = sorted(
    {
        (str(path.relative_to(REPO)), key)
        for path in CONFIG_FILES
        for key, value in json.loads(path.read_text()).items()
        if isinstance(value, bool) and "#" not in key
    }
)


@pytest.mark.parametrize(("config", "key"), BOOLEANS_IN_CONFIGS, ids=[f"{c}:{k}" for c, k in BOOLEANS_IN_CONFIGS])
def test_every_boolean_in_the_configs_is_a_boolean_setting(config: str, key: str) -> None:
    assert SETTINGS[key].kind == "boolean"


def test_the_boolean_settings_are_found() -> None:  # the search above reads the configs, not a list
    found = {key for _, key in BOOLEANS_IN_CONFIGS}
    assert {"resume", "write_dicom_seg", "write_rtstruct", "weight_binary", "overwrite", "instance_fill"} <= found
    assert {k for k, s in SETTINGS.items() if s.kind == "boolean"} == found | {"amp", "channels_last"}


BOOLEAN_SETTINGS = sorted(k for k, s in SETTINGS.items() if s.kind == "boolean")
WORDS = [("true", True), ("TRUE", True), ("Yes", True), ("1", True), (1, True), (True, True),
         ("false", False), ("False", False), ("no", False), ("0", False), (0, False), (False, False)]  # fmt: skip


@pytest.mark.parametrize("name", BOOLEAN_SETTINGS)
def test_boolean_settings_read_the_words_for_yes_and_no(name: str) -> None:
    for word, expected in WORDS:
        assert SETTINGS[name].convert(word, name) is expected, word
    for bad in ("maybe", "yes please", "", "on", 2, 0.5, None):
        with pytest.raises(ValueError, match=rf"{name}={bad!r} is not a boolean; valid values are true/false, 1/0"):
            SETTINGS[name].convert(bad, name)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("epochs", 0, r"epochs must be an integer >= 1, got 0"),
        ("epochs", "5", r"epochs must be an integer >= 1, got '5' \(a str\)"),
        ("val_interval", 2.5, r"val_interval must be an integer >= 1, got 2\.5"),
        ("spatial_dims", 4, r"spatial_dims must be an integer from 2 to 3, got 4"),
        ("num_workers", -1, r"num_workers must be an integer >= 0, got -1"),
        ("learning_rate", 0, r"learning_rate must be a number > 0, got 0"),
        ("learning_rate", "1e-3", r"learning_rate must be a number > 0, got '1e-3' \(a str\)"),
        ("momentum", 1.0, r"momentum must be a number >= 0 and < 1, got 1\.0"),
        ("dropout", float("nan"), r"dropout must be a number >= 0 and < 1, got nan"),
        ("cache_rate", True, r"cache_rate must be a number >= 0 and <= 1, got True \(a bool\)"),
        ("features", "64", r"features must be a list of positive integers such as \[64, 128, 256, 512, 1024\]"),
        ("features", [16, 0], r"features\[1\] must be an integer >= 1, got 0"),
        ("optimizer_name", "adamw", r"optimizer_name='adamw' is not supported; valid options are 'sgd', 'adam'"),
        ("label_rule", "mask", r"label_rule='mask' is not supported; valid options are 'classes', 'threshold'"),
        ("norm", "group", r"norm='group' is not supported; valid options are 'batch', 'instance'"),
        ("output_ext", ".jpg", r"output_ext='\.jpg' is not supported; valid options are '\.png', '\.tif'"),
        ("probability_dtype", "float32", r"probability_dtype='float32' is not supported; valid options are 'uint8'"),
        ("flip_axes", [0, 0], r"flip_axes must not repeat an axis"),
        ("weight_classes", "inverse", r"weight_classes='inverse' is not supported; valid values are 'balanced'"),
        ("channel_series", "(?i)t1", r"channel_series must be a list of SeriesDescription patterns, one per input"),
        ("channel_series", ["t1", "(flair"], r"channel_series\[1\]='\(flair' is not a valid regular expression"),
        ("foreground_ratio", 1.5, r"foreground_ratio must be a number >= 0 and <= 1, got 1\.5"),
        ("spacing", 1.0, r"spacing must be a list of voxel sizes in mm, one per spatial axis, such as \[1\.0, 1\.0, 6\.5\]"),
        ("spacing", [1.0, 0.0], r"spacing\[1\] must be a number > 0, got 0\.0"),
        ("series_description", "(flair", r"series_description='\(flair' is not a valid regular expression"),
        ("intensity_clip", [5, 1], r"intensity_clip must be \[low, high\] with low < high"),
        ("memory_limit", "lots", r"memory_limit='lots' is not a memory size"),
        ("dataset_dir", "/no/such/data", r"dataset_dir='/no/such/data' does not exist; give a folder holding dataset"
                                         r"\.json, the JSON file, the name of a shared data set \(dsb2018_nuclei, .*\), or"
                                         r" leave it empty for the generated default data"),
        ("input_dir", "/no/such/images", r"input_dir='/no/such/images' does not exist"),
        ("ckpt_path", "/no/such.pt", r"ckpt_path: checkpoint /no/such\.pt does not exist; train first"),
        ("device", "gpu", r"device='gpu' is not a device; valid values are auto .* cpu, cuda, cuda:N"),
        ("volume_device", "tpu", r"volume_device='tpu' is not a device"),
    ],
)  # fmt: skip
def test_bad_values_name_the_setting_the_value_and_the_valid_ones(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SETTINGS[name].convert(value, name)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("epochs", 5.0, 5),
        ("learning_rate", 1, 1.0),
        ("optimizer_name", "ADAM", "adam"),
        ("norm", "None", None),
        ("norm", None, None),
        ("pool_sizes", "null", None),
        ("spacing", [1, 1.5], [1.0, 1.5]),
        ("spacing", None, None),
        ("dataset_dir", "", ""),
        ("torch_threads", None, None),
        ("memory_limit", "2GiB", "2GiB"),
        ("device", "auto", torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")),
        ("device", "CPU", torch.device("cpu")),
        ("volume_device", "auto", "auto"),
    ],
)
def test_values_people_write_are_converted(name: str, value: object, expected: object) -> None:
    assert SETTINGS[name].convert(value, name) == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the refusal needs a machine without")
def test_cuda_without_cuda_names_the_setting_and_the_devices_there_are() -> None:
    with pytest.raises(ValueError, match=r"device='cuda' is not available: torch .* was built without CUDA\. Devices "
                                         r"here: cpu; use --device cpu or --device auto"):  # fmt: skip
        resolve_device("cuda")


def test_a_gpu_beyond_the_machine_is_refused() -> None:
    with pytest.raises(ValueError, match=r"volume_device='cuda:99' is not available"):
        resolve_device("cuda:99", "volume_device")


def _parser(*files: str, **overrides: Any) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(REPO / f) for f in files])
    parser.update(overrides)
    return parser


def _usable(tmp_path: Path) -> dict[str, str]:
    """Overrides for the settings that must name existing files."""
    (tmp_path / "model.pt").write_bytes(b"not read by the check")
    return {
        "ckpt_path": str(tmp_path / "model.pt"),
        "input_dir": str(tmp_path),
        "input_volume": str(tmp_path),
        "output_volume": str(tmp_path / "out.zarr"),
    }


COMBINATIONS = [
    *[[f"bundles/{b}/configs/train.json"] for b in ("unet2d", "unet3d")],
    *[[f"bundles/{b}/configs/train.json", f"bundles/{b}/configs/evaluate.json"] for b in ("unet2d", "unet3d")],
    *[[f"bundles/{b}/configs/inference.json"] for b in ("unet2d", "unet3d")],
    *[[f"bundles/{b}/configs/inference.json", f"bundles/{b}/configs/blockwise.json"] for b in ("unet2d", "unet3d")],
    # quickstart.json is a 2D recipe (the paper network at a quarter width, 100x100 tiles)
    *[["bundles/unet2d/configs/train.json", f"configs/{c}.json"]
      for c in ("smoke", "quickstart", "isbi2012_em", "isbi2012_cpu", "dsb2018_nuclei", "dsb2018_cpu")],
    *[["bundles/unet3d/configs/train.json", f"configs/{c}.json"]
      for c in ("smoke", "spleen_ct", "tcia_brain_mr", "spinal_cord_mr")],
]  # fmt: skip


def test_the_combinations_cover_every_overlay() -> None:
    overlays = {p.name for p in (REPO / "configs").glob("*.json")}
    assert overlays == {Path(c[-1]).name for c in COMBINATIONS if c[-1].startswith("configs/")}


@pytest.mark.parametrize("files", COMBINATIONS, ids=["+".join(Path(f).stem for f in c) for c in COMBINATIONS])
def test_every_shipped_config_passes_its_own_check_unchanged(files: list[str], tmp_path: Path) -> None:
    overrides = _usable(tmp_path)
    if any(f.endswith("evaluate.json") for f in files):
        overrides = {**overrides, "ckpt_path": overrides["ckpt_path"]}
    parser = _parser(*files, output_dir=str(tmp_path / "out"), **overrides)
    checked = check_settings(parser)
    for name, value in checked.items():
        raw = parser.get(name)
        written = "$" not in json.dumps(raw) and "@" not in json.dumps(raw)  # no expression or reference in it
        if written and name not in overrides:
            assert value == raw or (raw is None and value is None), name  # a written default is kept as written
    assert not (tmp_path / "out").exists()  # nothing was made


def test_every_config_checks_its_settings_first_thing() -> None:
    for path in CONFIG_FILES:
        initialize = json.loads(path.read_text()).get("initialize")
        if initialize is not None:
            assert initialize, path
            assert initialize[0].startswith("$medunet.engines.check_settings("), path


def test_all_bad_settings_are_listed_in_one_message(tmp_path: Path) -> None:
    parser = _parser(
        "bundles/unet2d/configs/train.json",
        "configs/smoke.json",
        output_dir=str(tmp_path),
        amp="maybe",
        epochs=0,
        output_tile=[100, 101],
    )
    with pytest.raises(SettingsError) as caught:
        check_settings(parser)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("3 bundle settings are not valid; nothing was run.")
    assert lines[1] == "  --amp: amp='maybe' is not a boolean; valid values are true/false, 1/0, yes/no (any case)"
    assert lines[2] == "  --epochs: epochs must be an integer >= 1, got 0"
    assert lines[3].startswith(
        "  --output_tile: output_tile=[100, 101] is not an output tile of this network (axis 1: "
    )
    assert "101 (nearest valid: 100 and 116)" in lines[3]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input_tile": [570, 570]}, r"input_tile=\[570, 570\]: .* nearest valid input sizes are 556 and 572"),
        ({"output_tile": [100, 100, 100]}, r"output_tile=\[100, 100, 100\] has 3 axes, the network has 2"),
        ({"tile_output": [388, 388]}, r"tile_output is no longer a setting \(it would be ignored\); use output_tile"),
        ({"val_tile_output": [388, 388]}, r"val_tile_output is no longer a setting .* use val_output_tile"),
        ({"roi_size": [572, 572]}, r"roi_size is no longer a setting .* use output_tile: the output tile"),
        ({"pool_sizes": [2, 2]}, r"pool_sizes"),
        ({"flip_axes": [0, 2]}, r"flip_axes=\[0, 2\]: a 2D image has spatial axes 0 to 1"),
        ({"block_shape": [64, 64, 64]}, r"block_shape=\[64, 64, 64\] has 3 axes, the network has spatial_dims=2"),
        (
            {"spacing": [1.0, 1.0, 6.5]},
            r"spacing=\[1\.0, 1\.0, 6\.5\] has 3 value\(s\), the network has spatial_dims=2",
        ),
    ],
)
def test_tiles_and_axes_are_checked_against_the_network(overrides: dict, message: str, tmp_path: Path) -> None:
    files = ["bundles/unet2d/configs/inference.json", "bundles/unet2d/configs/blockwise.json"]
    parser = _parser(*files, **_usable(tmp_path), **overrides)
    with pytest.raises(SettingsError, match=message):
        check_settings(parser)


def test_checked_values_reach_every_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medunet.inference.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # the preset is allowed, whatever this CPU has
    parser = _parser(
        "bundles/unet2d/configs/inference.json", **_usable(tmp_path), precision="BFloat16", channels_last="no",
        device="auto",
    )  # fmt: skip
    check_settings(parser)
    inferer = parser.get_parsed_content("inferer")
    assert inferer.precision == "bfloat16"
    assert inferer.channels_last is False
    assert parser.get_parsed_content("device") == resolve_device("auto")


def test_a_precision_the_device_cannot_run_fast_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medunet.inference.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    for value, message in [
        ("bfloat16", "--precision: precision='bfloat16' needs a CPU with native bfloat16"),
        ("float16", "--precision: precision='float16' runs on CUDA GPUs only"),
        (
            "double",
            "--precision: precision='double' is not supported; valid options are 'float32', 'bfloat16', 'float16'",
        ),
    ]:
        parser = _parser("bundles/nuclei/configs/inference.json", **_usable(tmp_path), precision=value, device="cpu")
        with pytest.raises(SettingsError, match=re.escape(message)):
            check_settings(parser)


def test_settings_the_run_does_not_read_are_left_unchecked(tmp_path: Path) -> None:
    parser = _parser("bundles/unet2d/configs/inference.json", ckpt_path=_usable(tmp_path)["ckpt_path"])
    parser["input_dir"] = "/no/such/images"
    assert "input_dir" not in check_settings(parser, unused=["input_dir"])
