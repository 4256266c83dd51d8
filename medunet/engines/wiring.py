"""Small functions the bundle configs call instead of holding logic in ``$`` expressions.

A bundle config wires objects together; a decision (which key feeds the weight map, what a run is called,
which handlers a rank attaches) is made here, where it is typed and tested.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medunet.inference.precision import amp_default, channels_last_default, to_channels_last

__all__ = [
    "active",
    "amp_default",
    "bundle_root",
    "channels_last_default",
    "cuda_amp",
    "image_meta",
    "place_network",
    "run_name",
    "saved_label_scale",
    "weight_map_source",
]


def place_network(network: nn.Module, device: torch.device | str, channels_last: bool) -> nn.Module:
    """The network on ``device``, in channels-last memory format when ``channels_last`` (same object: the
    checkpoint keys do not change)."""
    network = network.to(device)
    return to_channels_last(network) if channels_last else network


def cuda_amp(amp: bool, device: torch.device | str) -> bool:
    """Whether MONAI's engines should run their own AMP (float16 autocast with gradient scaling): CUDA only;
    on the CPU :class:`~medunet.inference.AutocastInferer` and the overlap-tile inferer autocast to bfloat16."""
    return bool(amp) and torch.device(device).type == "cuda"


def weight_map_source(binary: bool) -> str:
    """The data key the weight map is computed from: the class label when ``binary`` (objects are its
    connected components), else the instance labels that ``LabelToClassesd`` keeps under ``instances``."""
    return "label" if binary else "instances"


def run_name(bundle: str, output_dir: str | Path, stage: str | None = None) -> str:
    """The MLflow run name: ``<bundle>[-<stage>]-<name of output_dir>``, so that a resumed run (same
    output folder) continues its run."""
    folder = os.path.basename(os.path.abspath(output_dir))
    return "-".join(part for part in (bundle, stage, folder) if part)


def saved_label_scale(output_ext: str, num_classes: int) -> int | None:
    """Scale for MONAI's ``SaveImage``: a two-class PNG is written as 0/255 so that it is visible; other
    outputs keep the class indices."""
    return 255 if output_ext.lower() == ".png" and num_classes == 2 else None


def active(handlers: Iterable[Any]) -> list[Any]:
    """The handlers of a list without the ones disabled on this process (MONAI resolves a reference to a
    component with ``"_disabled_": true`` to None, which an engine cannot attach)."""
    return [h for h in handlers if h is not None]


def image_meta(batch: Sequence[dict[str, Any]]) -> list[Any]:
    """The image metadata of each case of a decollated batch (MONAI ``MetricsSaver``'s ``batch_transform``:
    names the cases in the per-case metrics file)."""
    return [case["image"].meta for case in batch]


def bundle_root() -> str:
    """The folder of the bundle whose config is being read: the parent of its ``configs/`` folder.

    A bundle's paths (``models/model.pt``, ``docs/``) are relative to its root, not to the working directory.
    MONAI gives a config's expressions no name for the file they come from, so this looks for it where MONAI
    keeps it: the ``config_root_path`` of the ``ConfigWorkflow`` running (``monai.bundle run`` and every
    workflow), up the call stack; else the first ``sys.path`` entry that is a bundle (MONAI Deploy's operator
    puts the bundle's folder there before reading its configs); else the working directory, as MONAI's own
    bundle scripts assume.
    """
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        # vars(), not getattr(): a workflow's __getattr__ looks names up in its config and raises ValueError
        root = vars(owner).get("config_root_path") if type(owner).__name__.endswith("Workflow") else None
        if isinstance(root, Path):
            folder = root.resolve()
            return str(folder.parent if folder.name == "configs" else folder)
        frame = frame.f_back
    for entry in sys.path:
        if entry and (Path(entry) / "configs" / "metadata.json").is_file():
            return str(Path(entry).resolve())
    return os.getcwd()
