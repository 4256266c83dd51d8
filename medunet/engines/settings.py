"""The bundles' top-level settings, checked and converted once, before a run does any work.

MONAI's bundle runner passes a command-line value through as whatever Python literal or string it parses to:
``--amp true`` arrives as the string ``"true"`` (only ``True`` is a Python literal) and ``--amp false`` as a
non-empty string, which every truth test reads as *on*. Each consumer used to see the raw value where it used it,
so a bad value could cost a whole training before it was noticed. :data:`SETTINGS` is the schema of every
top-level setting of the bundle configs (``bundles/*/configs``, ``configs/``); :func:`check_settings`, the first
expression of every config's ``initialize``, converts them all (booleans from true/false/1/0/yes/no, devices
resolved against the machine) and refuses bad ones in one message that names each setting, its value and the valid
values, before any data is loaded or any network is built.

How the converted values reach the rest of the config: MONAI resolves ``@amp`` from its resolver's cache of
resolved items, and it offers no hook between reading the command line and resolving the config. So
:func:`check_settings` resolves each setting (a literal or a default expression such as
``$medunet.engines.amp_default(@device, True)``), converts it, and stores the converted value in that cache; every later
``@amp`` gets the checked value. Called with no argument from a config, it finds the resolver running it on the
call stack (as :func:`medunet.engines.bundle_root` finds the workflow); the ``medunet`` commands that parse a
bundle call it with their parser.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.bundle.reference_resolver import ReferenceResolver

from medunet.data.datasets import DATASETS
from medunet.engines.distributed import default_device
from medunet.engines.run import check_checkpoint
from medunet.inference.precision import cpu_has_native_bf16, precision_dtype
from medunet.networks.geometry import UNetGeometry, normalize_pool_sizes
from medunet.utils.enums import (
    InstanceSplit,
    IntensityPreset,
    LabelRule,
    NormType,
    OptimizerName,
    Precision,
    ProbabilityDtype,
    SegType,
    VolumeOutput,
    WeightsDtype,
    look_up,
)
from medunet.utils.values import as_bool, positive_int, positive_ints, real_number

__all__ = ["RENAMED", "SETTINGS", "Setting", "SettingsError", "check_settings", "resolve_device"]

logger = logging.getLogger(__name__)

Convert = Callable[[Any, str], Any]


class SettingsError(ValueError):
    """One or more bundle settings are not valid; the message lists each with its value and the valid values."""


@dataclass(frozen=True)
class Setting:
    """How one top-level setting is checked.

    Attributes:
        convert: ``convert(value, name)`` returns the value to use, or raises ``ValueError`` naming the setting,
            the value and the valid values.
        kind: the class of setting (``boolean``, ``integer``, ``number``, ``option``, ``integers``, ``tile``,
            ``path``, ``device``, ``text``, ``numbers``), for the documentation and the tests.
    """

    convert: Convert
    kind: str


_NONE_WORDS = ("none", "null")


def _optional(convert: Convert) -> Convert:
    """``convert``, letting None (and the words none/null a command line gives for it) through as None."""

    def optional(value: Any, name: str) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        return convert(value, name)

    return optional


def boolean() -> Setting:
    return Setting(as_bool, "boolean")


def integer(minimum: int = 1, maximum: int | None = None, optional: bool = False) -> Setting:
    def convert(value: Any, name: str) -> int:
        number = positive_int(value, name, minimum)
        if maximum is not None and number > maximum:
            raise ValueError(f"{name} must be an integer from {minimum} to {maximum}, got {value!r}")
        return number

    return Setting(_optional(convert) if optional else convert, "integer")


def number(
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> Setting:
    def convert(value: Any, name: str) -> float:
        return real_number(value, name, low, high, low_open, high_open)

    return Setting(_optional(convert) if optional else convert, "number")


def option(enum: Any, optional: bool = False) -> Setting:
    def convert(value: Any, name: str) -> Any:
        return look_up(value, enum, name)

    return Setting(_optional(convert) if optional else convert, "option")


def integers(example: str, optional: bool = False) -> Setting:
    def convert(value: Any, name: str) -> list[int]:
        return list(positive_ints(value, name, example))

    return Setting(_optional(convert) if optional else convert, "integers")


def tile(example: str, optional: bool = False) -> Setting:
    """A tile shape (positive integers); its validity for the network is checked with the network's settings."""
    setting = integers(example, optional)
    return Setting(setting.convert, "tile")


def _is_list(value: Any) -> bool:
    """A sequence of values, not text (which iterates as characters)."""
    return hasattr(value, "__iter__") and not isinstance(value, (str, bytes, Mapping))


def _pool_sizes(value: Any, name: str) -> list[Any]:
    """A list of pooling sizes, one per level below the top (an int, or one per axis); its length and entries are
    checked against ``features`` and ``spatial_dims`` by :func:`medunet.networks.geometry.normalize_pool_sizes`."""
    if not _is_list(value):
        raise ValueError(
            f"{name} must be a list such as [[2, 2, 1], [2, 2, 1], [2, 2, 2]] (or null for 2), got {value!r}"
        )
    return list(value)


def _spacing(value: Any, name: str) -> list[float]:
    """Voxel spacing in mm to resample to (one per spatial axis; its length is checked against spatial_dims)."""
    if not _is_list(value) or not list(value):
        raise ValueError(
            f"{name} must be a list of voxel sizes in mm, one per spatial axis, such as [1.0, 1.0, 6.5] (or null to "
            f"keep each image's own grid), got {value!r}"
        )
    return [real_number(v, f"{name}[{i}]", 0.0, low_open=True) for i, v in enumerate(value)]


def _axes(value: Any, name: str) -> list[int]:
    if not _is_list(value):
        raise ValueError(f"{name} must be a list of spatial axes such as [0, 1] (or [] for none), got {value!r}")
    axes = [positive_int(v, f"{name}[{i}]", 0) for i, v in enumerate(value)]
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name} must not repeat an axis, got {value!r}")
    return axes


def _text(value: Any, name: str) -> str:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty text, got {value!r}")
    return value


def text(optional: bool = False) -> Setting:
    return Setting(_optional(_text) if optional else _text, "text")


def _pattern(value: Any, name: str) -> str:
    value = _text(value, name)
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"{name}={value!r} is not a valid regular expression ({err}), e.g. '(?i)flair'") from None
    return value


def _weight_classes(value: Any, name: str) -> str:
    if value != "balanced":
        raise ValueError(
            f"{name}={value!r} is not supported; valid values are 'balanced' (inverse class frequency, the paper's "
            "class balance) and null (no class weights: plain cross-entropy plus the border term)"
        )
    return value


def _patterns(value: Any, name: str) -> list[str]:
    """A list of regular expressions (a multi-series model's SeriesDescription patterns, one per channel)."""
    if isinstance(value, str) or not _is_list(value) or not list(value):
        raise ValueError(
            f"{name} must be a list of SeriesDescription patterns, one per input channel, such as "
            f'["(?i)t1post", "(?i)flair"] (or null for single-series input), got {value!r}'
        )
    return [_pattern(item, f"{name}[{i}]") for i, item in enumerate(value)]


def existing_path(what: str, empty_means: str | None = None) -> Setting:
    """A file or folder that must exist; with ``empty_means``, an empty value is allowed and means that."""

    def convert(value: Any, name: str) -> str:
        if empty_means is not None and (value is None or value == ""):
            return ""
        path = Path(_text(value, name)).expanduser()
        if not path.exists():
            also = f", or leave it empty for {empty_means}" if empty_means else ""
            raise ValueError(f"{name}={str(value)!r} does not exist; give an existing {what}{also}")
        return str(path)

    return Setting(convert, "path")


def _output_folder(value: Any, name: str) -> str:
    path = Path(_text(value, name)).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}={str(value)!r} is a file; give a folder (it is created where missing)")
    return str(path)


def _dataset(value: Any, name: str) -> str:
    """A data list folder or file, the name of a shared data set, or empty (the generated default data)."""
    if value is None or value == "" or value in DATASETS:
        return "" if value is None else str(value)
    path = Path(_text(value, name)).expanduser()
    if not path.exists():
        raise ValueError(
            f"{name}={str(value)!r} does not exist; give a folder holding dataset.json, the JSON file, the name of a "
            f"shared data set ({', '.join(sorted(DATASETS))}), or leave it empty for the generated default data"
        )
    return str(path)


def _tiff_file(value: Any, name: str) -> str:
    path = Path(_text(value, name)).expanduser()
    if not path.name.lower().endswith((".tif", ".tiff")):
        raise ValueError(f"{name}={str(value)!r} is not a TIFF file name; give one ending in .tif or .tiff")
    return str(path)


def _checkpoint(value: Any, name: str) -> str:
    try:
        return check_checkpoint(_text(value, name))
    except FileNotFoundError as err:
        raise ValueError(f"{name}: {err}") from None


_DEVICE_FORMS = "auto (a GPU where there is one, else the CPU), cpu, cuda, cuda:N"


def _available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def _parse_device(value: Any, name: str) -> torch.device | None:
    """The device ``value`` names (None for ``auto``), without checking that the machine has it."""
    if isinstance(value, torch.device):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}={value!r} is not a device; valid values are {_DEVICE_FORMS}")
    if value.strip().lower() == "auto":
        return None
    try:
        return torch.device(value.strip().lower())
    except RuntimeError:
        raise ValueError(f"{name}={value!r} is not a device; valid values are {_DEVICE_FORMS}") from None


def resolve_device(value: Any, name: str = "device") -> torch.device:
    """The device ``value`` names, on this machine: ``auto`` picks :func:`default_device`; ``cuda`` (or
    ``cuda:N``) without CUDA (or with fewer GPUs) is a ``ValueError`` naming ``--<name>`` and the devices this
    machine has."""
    device = _parse_device(value, name)
    if device is None:
        return default_device()
    available = _available_devices()
    if device.type == "cpu" or str(device) in available:
        return device
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return device
    if device.type == "cuda" and not torch.cuda.is_available():
        why = (
            f"torch {torch.__version__} was built without CUDA"
            if torch.version.cuda is None
            else "no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES)"
        )
    else:
        why = f"this machine has no {device}"
    raise ValueError(
        f"{name}={str(value)!r} is not available: {why}. Devices here: {', '.join(available)}; "
        f"use --{name} {available[-1]} or --{name} auto"
    )


def _worker_device(value: Any, name: str) -> str:
    """A blockwise worker's device: checked for its form here; whether a worker has it is checked against this
    machine only for a local cluster (a remote scheduler's workers may have GPUs that this machine has not)."""
    device = _parse_device(value, name)
    return "auto" if device is None else str(device)


def _default_data(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping such as {{'n_training': 6, 'n_validation': 2}}, got {value!r}")
    checked = dict(value)
    for key in ("n_training", "n_validation"):
        if key in checked:
            checked[key] = positive_int(checked[key], f"{name}#{key}")
    if checked.get("shape") is not None:
        checked["shape"] = list(positive_ints(checked["shape"], f"{name}#shape", "[256, 256]"))
    return checked


def _clip(value: Any, name: str) -> list[float]:
    if not _is_list(value) or len(list(value)) != 2:
        raise ValueError(f"{name} must be two numbers [low, high] (or null for no clipping), got {value!r}")
    low, high = (real_number(v, f"{name}[{i}]") for i, v in enumerate(value))
    if low >= high:
        raise ValueError(f"{name} must be [low, high] with low < high, got {value!r}")
    return [low, high]


def _memory(value: Any, name: str) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*([KMGT]i?B|B)?\s*", value, re.IGNORECASE):
        return value
    raise ValueError(f"{name}={value!r} is not a memory size; give bytes or a size such as '2GiB' or '1500MB'")


_OUTPUT_SUFFIXES = (".png", ".tif", ".tiff", ".nii", ".nii.gz")


def _output_ext(value: Any, name: str) -> str:
    if isinstance(value, str) and value.lower() in _OUTPUT_SUFFIXES:
        return value.lower()
    raise ValueError(f"{name}={value!r} is not supported; valid options are {', '.join(map(repr, _OUTPUT_SUFFIXES))}")


SETTINGS: dict[str, Setting] = {
    # where it runs; first, because the default expressions of amp and channels_last read it
    "device": Setting(resolve_device, "device"),
    "amp": boolean(),
    "precision": option(Precision),
    "channels_last": boolean(),
    # data and outputs
    "output_dir": Setting(_output_folder, "path"),
    "dataset_dir": Setting(_dataset, "path"),
    "input_dir": existing_path("folder of images or DICOM series (or one image file)"),
    "ckpt_path": Setting(_checkpoint, "path"),
    "bundle_name": text(),
    "experiment_name": text(),
    "series_description": Setting(_optional(_pattern), "text"),
    "modality": text(optional=True),
    "series_uid": text(optional=True),
    "channel_series": Setting(_optional(_patterns), "text"),  # checked against in_channels below
    "label_series": Setting(_optional(_pattern), "text"),
    "default_shape": integers("[256, 256]"),
    "default_data": Setting(_default_data, "integers"),
    "label_rule": option(LabelRule),
    "intensity_preset": option(IntensityPreset),
    "cache_rate": number(0.0, 1.0),
    "num_workers": integer(0),
    # the network
    "spatial_dims": integer(2, 3),
    "in_channels": integer(1),
    "num_classes": integer(2),
    "features": integers("[64, 128, 256, 512, 1024]"),
    "dropout": number(0.0, 1.0, high_open=True),
    "norm": option(NormType, optional=True),
    "pool_sizes": Setting(_optional(_pool_sizes), "integers"),  # checked with features and spatial_dims below
    "spacing": Setting(_optional(_spacing), "numbers"),  # checked with spatial_dims below
    "output_tile": tile("[388, 388]"),
    "val_output_tile": tile("[388, 388]"),
    # training
    "seed": integer(0),
    "epochs": integer(1),
    "val_interval": integer(1),
    "early_stop_patience": integer(1),
    "resume": boolean(),
    "checkpoint_interval": integer(1),
    "optimizer_name": option(OptimizerName),
    "learning_rate": number(0.0, low_open=True),
    "lr_decay_power": number(0.0),
    "momentum": number(0.0, 1.0, high_open=True),
    "weight_decay": number(0.0),
    "batch_size": integer(1),
    "samples_per_image": integer(1),
    "foreground_ratio": number(0.0, 1.0),
    "weight_w0": number(0.0),
    "weight_sigma": number(0.0, low_open=True),
    "weight_binary": boolean(),
    "weight_separate": boolean(),
    "weight_classes": Setting(_optional(_weight_classes), "option"),
    "dice_weight": number(0.0),
    "elastic_prob": number(0.0, 1.0),
    "elastic_sigma": number(0.0),
    # inference outputs
    "flip_axes": Setting(_axes, "integers"),
    "output_ext": Setting(_output_ext, "option"),
    "write_dicom_seg": boolean(),
    "seg_type": option(SegType),
    "write_rtstruct": boolean(),
    "rtstruct_tolerance": number(0.0, 2.0),
    "rtstruct_min_area": number(0.0),
    "rtstruct_max_contours": integer(1),
    "write_instances": boolean(),
    "write_overlay": boolean(),
    "write_measurements": boolean(),
    "instance_split": option(InstanceSplit),
    "instance_min_size": integer(0),
    "instance_seed_threshold": number(0.0, 1.0),
    "instance_seed_height": number(0.0),
    "instance_seed_min_size": integer(0),
    "instance_fill": boolean(),
    # blockwise inference (bundles/*/configs/blockwise.json)
    "input_volume": existing_path("zarr array, OME-Zarr folder or (Big)TIFF file"),
    "volume_array": text(optional=True),
    "output_volume": Setting(_output_folder, "path"),
    "volume_output": option(VolumeOutput),
    "probability_dtype": option(ProbabilityDtype),
    "weights_dtype": option(WeightsDtype),
    "write_volume_instances": boolean(),
    "input_tile": tile("[572, 572]", optional=True),
    "block_shape": integers("[128, 128, 64]", optional=True),
    "chunks": integers("[64, 64, 32]", optional=True),
    "intensity_scale": number(),
    "intensity_offset": number(),
    "intensity_clip": Setting(_optional(_clip), "number"),
    "workers": integer(1),
    "torch_threads": integer(1, optional=True),
    "volume_device": Setting(_worker_device, "device"),
    "scheduler": text(optional=True),
    "memory_limit": Setting(_optional(_memory), "text"),
    "retries": integer(0),
    "overwrite": boolean(),
    "export_tiff": Setting(_optional(_tiff_file), "path"),
}
"""Every top-level setting of the bundle configs, in the order they are checked."""

RENAMED = {
    "tile_output": "output_tile: the output tile of a training sample or an inference tile, in output voxels",
    "val_tile_output": "val_output_tile: the output tile of validation inference, in output voxels",
    "roi_size": "output_tile: the output tile, in output voxels (the input tile is output_tile + 2 * margin; "
    "`medunet geometry --output ...` prints it)",
}
"""Settings of earlier versions that a user's overlay or command line may still give, and what replaced each."""


def _resolver_on_stack() -> ReferenceResolver:
    """The resolver of the config being resolved: MONAI gives an expression no name for it."""
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, ReferenceResolver):
            return owner
        frame = frame.f_back
    raise RuntimeError(
        "check_settings() without a parser must be called from a bundle config's expression "
        "(e.g. the first entry of 'initialize'); from Python pass the ConfigParser"
    )


def _valid_outputs(geometry: UNetGeometry, tile: Sequence[int], name: str) -> None:
    """Refuses an output tile the network cannot produce, naming the nearest output tiles it can."""
    geometry.input_tile_for(tile, name)


def _valid_inputs(geometry: UNetGeometry, tile: Sequence[int], name: str) -> None:
    """Refuses an input tile the network cannot take, naming the nearest input tiles it can."""
    if len(tile) != geometry.spatial_dims:
        raise ValueError(f"{name}={list(tile)} has {len(tile)} axes, the network has {geometry.spatial_dims}")
    try:
        geometry.check_input_shape(tile)
    except ValueError as err:
        raise ValueError(f"{name}={list(tile)}: {err}") from None


def _check_together(checked: dict[str, Any], errors: dict[str, str]) -> None:
    """The checks that need several settings: tiles and axes against the network, the blockwise device."""
    dims, features = checked.get("spatial_dims"), checked.get("features")
    if dims is not None and features is not None and "pool_sizes" not in errors:
        try:
            pools = normalize_pool_sizes(checked.get("pool_sizes"), len(features), dims)
            checked["pool_sizes"] = None if checked.get("pool_sizes") is None else [list(p) for p in pools]
            geometry: UNetGeometry | None = UNetGeometry(pools, dims)
        except ValueError as err:
            errors["pool_sizes"] = str(err)
            geometry = None
        rules: list[tuple[str, Callable[[UNetGeometry, Sequence[int], str], None]]] = [
            ("output_tile", _valid_outputs),
            ("val_output_tile", _valid_outputs),
            ("input_tile", _valid_inputs),
        ]
        for key, rule in rules:
            if geometry is not None and checked.get(key) is not None and key not in errors:
                try:
                    rule(geometry, checked[key], key)
                except ValueError as err:
                    errors[key] = str(err)
    spacing = checked.get("spacing")
    if spacing is not None and dims is not None and len(spacing) != dims:
        errors["spacing"] = f"spacing={spacing} has {len(spacing)} value(s), the network has spatial_dims={dims}"
    patterns, channels = checked.get("channel_series"), checked.get("in_channels")
    if patterns is not None and channels is not None and len(patterns) != channels:
        errors["channel_series"] = (
            f"channel_series has {len(patterns)} pattern(s) {patterns}, the network takes in_channels={channels}: "
            "give one SeriesDescription pattern per input channel"
        )
    if checked.get("label_series") is not None and patterns is None and "channel_series" not in errors:
        errors["label_series"] = (
            f"label_series={checked['label_series']!r} names a study's mask series; it needs channel_series "
            "(the study's image series, one pattern per channel)"
        )
    if dims is not None:
        for key in ("default_shape", "block_shape", "chunks"):
            shape = checked.get(key)
            if shape is not None and len(shape) != dims and key not in errors:
                errors[key] = f"{key}={shape} has {len(shape)} axes, the network has spatial_dims={dims}"
        axes = checked.get("flip_axes")
        if axes and "flip_axes" not in errors and max(axes) >= dims:
            errors["flip_axes"] = f"flip_axes={axes}: a {dims}D image has spatial axes 0 to {dims - 1}"
    if checked.get("volume_device") not in (None, "auto") and checked.get("scheduler") is None:
        try:
            resolve_device(checked["volume_device"], "volume_device")
        except ValueError as err:
            errors["volume_device"] = str(err)
    device = checked.get("device")
    if checked.get("precision") is not None and isinstance(device, torch.device) and "precision" not in errors:
        try:
            precision_dtype(checked["precision"], device)
        except ValueError as err:
            errors["precision"] = str(err)
    if checked.get("amp") and isinstance(device, torch.device) and device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning(
            "amp=True on a CPU without native bfloat16 (AVX512-BF16 / AMX): bfloat16 is emulated there and runs "
            "many times slower than float32"
        )


def check_settings(parser: ConfigParser | None = None, unused: Sequence[str] = ()) -> dict[str, Any]:
    """Checks and converts every top-level setting of a bundle config (:data:`SETTINGS`) in one pass.

    Args:
        parser: the bundle's parser, before anything of it was resolved (the ``medunet`` commands); None when
            called from the config itself, as the first entry of ``initialize``.
        unused: settings the run does not read (e.g. ``input_dir`` where the input comes another way), which are
            left unchecked.

    Returns:
        The checked settings by name; every later ``@name`` of the config resolves to the same value.

    Raises:
        SettingsError: one or more settings are not valid; the message lists each, its value and the valid ones.
    """
    if parser is not None:
        parser.parse(reset=True)
        resolver = parser.ref_resolver
    else:
        resolver = _resolver_on_stack()
    checked: dict[str, Any] = {}
    errors: dict[str, str] = {
        old: f"{old} is no longer a setting (it would be ignored); use {new}"
        for old, new in RENAMED.items()
        if old in resolver.items
    }
    for name, setting in SETTINGS.items():
        if name not in resolver.items or name in unused:
            continue
        try:
            value = resolver.get_resolved_content(name)
        except Exception as err:  # a default expression that fails names the setting, not MONAI's item id
            errors[name] = f"{name}: its value cannot be evaluated ({type(err).__name__}: {err})"
            continue
        try:
            checked[name] = setting.convert(value, name)
        except ValueError as err:
            errors[name] = str(err)
            continue
        resolver.resolved_content[name] = checked[name]
    _check_together(checked, errors)
    if "pool_sizes" in checked and "pool_sizes" not in errors:  # normalised against features and spatial_dims
        resolver.resolved_content["pool_sizes"] = checked["pool_sizes"]
    if errors:
        lines = [f"  --{name}: {message}" for name, message in errors.items()]
        message = (
            f"{len(errors)} bundle setting{'s are' if len(errors) > 1 else ' is'} not valid; nothing was run. "
            "Change it in the config or on the command line (--name value):\n" + "\n".join(lines)
        )
        logger.error(message)
        raise SettingsError(message)
    return checked
