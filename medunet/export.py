"""Exporting a trained ValidUNet for deployment: ``torch.export`` programs, and ONNX artefacts for a torch-free
runtime.

``torch.jit.script`` fails on this network (its forward checks the input size with Python code) and
TorchScript is deprecated in recent PyTorch; tracing works (``python -m monai.bundle ckpt_export ...
--use_trace True``) and so does ``torch.export``, for one fixed tile shape: the overlap-tile inferer always
feeds the same tile size, so a static-shape program is all torch deployment needs.

:func:`export_onnx` writes one zip file that :mod:`medunet.runtime` runs with numpy and ONNX Runtime alone:
``model.onnx``, exported by ``torch.onnx.export`` (its ``torch.export`` path) with every spatial axis dynamic
over the network's valid input sizes (``stride * k + offset``, so the last, clipped tiles and small images
need no re-export), and ``pipeline.json``, the settings of the overlap-tile inference around it.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medunet.networks.unet import ValidUNet
from medunet.utils.enums import IntensityPreset, OutputMode, PaddingMode, look_up
from medunet.utils.files import atomic_write

__all__ = ["FORMAT_VERSION", "INSTANCE_SETTINGS", "export_bundle_onnx", "export_onnx", "export_program", "load_program"]

FORMAT_VERSION = 1
"""The version of the ONNX artefact's ``pipeline.json`` (read by :mod:`medunet.runtime`)."""

INSTANCE_SETTINGS = ("split", "min_size", "seed_threshold", "seed_height", "seed_min_size", "fill")
"""The bundles' ``instance_*`` settings that the post-processing takes (``instances_from_prediction``'s keywords)."""

logger = logging.getLogger(__name__)


def export_program(network: ValidUNet, input_tile: Sequence[int], path: str | Path, batch_size: int = 1) -> Path:
    """Writes a ``torch.export`` program (``.pt2``) of ``network`` in eval mode for input tiles of ``input_tile``.

    Raises:
        ValueError: ``input_tile`` is not a valid input for the network (names the nearest valid sizes).
    """
    shape = network.geometry.check_input_shape(input_tile)
    network = network.eval()
    example = torch.zeros(batch_size, network.in_channels, *shape)
    program = torch.export.export(network, (example,))
    out = atomic_write(path, lambda fh: torch.export.save(program, fh))
    logger.info("exported %s for input %s to %s", type(network).__name__, tuple(example.shape), out)
    return out


def load_program(path: str | Path) -> torch.nn.Module:
    """The module of a saved ``torch.export`` program."""
    return torch.export.load(str(path)).module()


def export_onnx(
    network: ValidUNet,
    path: str | Path,
    *,
    input_tile: Sequence[int] | None = None,
    output_tile: Sequence[int] | None = None,
    padding_mode: str | PaddingMode = PaddingMode.SYMMETRIC,
    flip_axes: Sequence[int] = (),
    output: str | OutputMode = OutputMode.PROBABILITIES,
    intensity_preset: str | IntensityPreset | None = None,
    intensity_params: dict[str, Any] | None = None,
    instances: dict[str, Any] | None = None,
    name: str = "medunet",
) -> Path:
    """Writes ``network`` (eval mode, float32) and its inference settings as one zip file for
    :class:`medunet.runtime.Pipeline`.

    Args:
        network: the trained network.
        path: the zip file to write (replaced atomically).
        input_tile / output_tile: the overlap-tile inferer's tile (one of the two; neither: the smallest tile
            whose output covers 388 voxels per axis, the paper's).
        padding_mode / flip_axes / output: as for :class:`medunet.inference.OverlapTileInferer`.
        intensity_preset / intensity_params: the bundle's intensity preset and its parameters (None: the image
            is used as it is).
        instances: the keyword arguments of
            :func:`~medunet.transforms.functional.instances.instances_from_prediction` (``split``, ``min_size``,
            ...), or None for class labels only.
        name: a name stored with the settings (the bundle's).

    Raises:
        ValueError: an invalid tile or setting (the message names it).
    """
    geometry = network.geometry
    if input_tile is not None and output_tile is not None:
        raise ValueError("give input_tile or output_tile, not both")
    if input_tile is None:
        input_tile = geometry.input_tile_for(output_tile or (388,) * geometry.spatial_dims)
    tile = geometry.check_input_shape(input_tile)
    flips = [int(a) for a in flip_axes]
    if any(not 0 <= a < geometry.spatial_dims for a in flips):
        raise ValueError(
            f"flip_axes={flips}: a {geometry.spatial_dims}D image has spatial axes 0 to {geometry.spatial_dims - 1}"
        )
    unknown = sorted(set(instances or {}) - set(INSTANCE_SETTINGS))
    if unknown:
        raise ValueError(f"instances: unknown settings {unknown}; valid are {list(INSTANCE_SETTINGS)}")
    settings = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "geometry": {
            "spatial_dims": geometry.spatial_dims,
            "pool_sizes": [list(p) for p in geometry.pool_sizes],
            "kernel_size": geometry.kernel_size,
            "convs_per_level": geometry.convs_per_level,
        },
        "in_channels": network.in_channels,
        "num_classes": network.out_channels,
        "input_tile": list(tile),
        "padding_mode": look_up(padding_mode, PaddingMode, "padding_mode").value,
        "flip_axes": flips,
        "output": look_up(output, OutputMode, "output").value,
        "intensity_preset": None
        if intensity_preset is None
        else look_up(intensity_preset, IntensityPreset, "intensity_preset").value,
        "intensity_params": dict(intensity_params or {}),
        "instances": None if instances is None else dict(instances),
    }
    model = _onnx_bytes(network)

    def write(fh: Any) -> None:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("model.onnx", model)
            archive.writestr("pipeline.json", json.dumps(settings, indent=2) + "\n")

    out = atomic_write(path, write)
    logger.info("exported %s (input tile %s) with its pipeline to %s", name, tile, out)
    return out


def _onnx_bytes(network: ValidUNet) -> bytes:
    """``model.onnx`` of the network in eval mode: input ``image`` ``(N, C, *S)``, output ``logits``, each spatial
    axis dynamic over the valid sizes ``stride * k + offset`` (k >= the smallest bottleneck)."""
    from torch.export import Dim

    network = network.eval()
    geometry = network.geometry
    shapes = {}
    for d, axis in enumerate(geometry.axes):
        k = Dim(f"k{d}", min=axis.min_bottleneck, max=4096)
        shapes[d + 2] = axis.stride * k + axis.input_offset
    example = torch.zeros(1, network.in_channels, *geometry.min_input_shape)
    program = torch.onnx.export(
        network, (example,), None, dynamo=True, input_names=["image"], output_names=["logits"],
        dynamic_shapes=(shapes,), verbose=False,
    )  # fmt: skip
    assert program is not None
    return bytes(program.model_proto.SerializeToString())


def export_bundle_onnx(config_file: str | Path | Sequence[str | Path], ckpt_path: str | Path, path: str | Path) -> Path:
    """:func:`export_onnx` of a bundle: its ``network_def`` with the checkpoint's weights, and its inference
    settings (``output_tile``, ``flip_axes``, ``intensity_preset``, the ``instance_*`` settings where
    ``write_instances``) from ``config_file`` (the bundle's ``inference.json``).

    Raises:
        ValueError, FileNotFoundError: not a medunet bundle config, or an unreadable checkpoint.
    """
    from monai.bundle import ConfigParser

    from medunet.networks.weights import load_weights

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_file] if isinstance(config_file, (list, tuple)) else str(config_file))
    network = parser.get_parsed_content("network_def")
    if not isinstance(network, ValidUNet):
        raise ValueError(f"network_def in {config_file} is not a medunet ValidUNet")
    load_weights(network, ckpt_path)

    def setting(key: str, default: Any = None) -> Any:
        return parser.get_parsed_content(key) if key in parser.config else default  # type: ignore[operator]

    instances = None
    if setting("write_instances", False):
        instances = {k: setting(f"instance_{k}") for k in INSTANCE_SETTINGS if f"instance_{k}" in parser.config}  # type: ignore[operator]
    return export_onnx(
        network, path, output_tile=setting("output_tile"), flip_axes=setting("flip_axes", ()),
        intensity_preset=setting("intensity_preset"), instances=instances, name=setting("bundle_name", "medunet"),
    )  # fmt: skip
