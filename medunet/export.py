"""Exporting a trained ValidUNet for deployment: ``torch.export`` programs and TorchScript traces.

``torch.jit.script`` fails on this network (its forward checks the input size with Python code) and
TorchScript is deprecated in recent PyTorch; tracing works (``python -m monai.bundle ckpt_export ...
--use_trace True``) and so does ``torch.export``, for one fixed tile shape: the overlap-tile inferer always
feeds the same tile size, so a static-shape program is all deployment needs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from medunet.networks.unet import ValidUNet
from medunet.utils.files import atomic_write

__all__ = ["export_program", "load_program"]

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
