"""Numerical precision and memory layout of a network pass: autocast and channels-last.

Mixed precision autocasts to float16 on CUDA and to bfloat16 on the CPU. bfloat16 only pays where the CPU
has native bfloat16 instructions (AVX512-BF16 / AMX, which oneDNN uses); elsewhere PyTorch emulates it and
a bfloat16 pass is many times slower than float32 (measured in ``benchmarks/precision.py``). So AMP is on by
default on CUDA only; on the CPU it is a setting (``--amp true``), and :func:`cpu_has_native_bf16` says
whether it can help. Channels-last memory format (NHWC / NDHWC) lets oneDNN and cuDNN use their fastest
convolution kernels; it changes no result beyond float rounding.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer
from torch import nn

from medunet.utils.values import as_bool

__all__ = [
    "AutocastInferer",
    "amp_default",
    "autocast_dtype",
    "channels_last_default",
    "cpu_has_native_bf16",
    "to_channels_last",
]

logger = logging.getLogger(__name__)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's check: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_default(device: torch.device | str, training: bool = False) -> bool:
    """Mixed precision by default: on CUDA (float16), and for training on a CPU with native bfloat16 (AVX512-BF16 /
    AMX; measured faster there with the same validation accuracy, ``benchmarks/results/precision.md``). Inference
    on the CPU stays float32 unless asked for: float32 is the overlap-tile inferer's exactness contract, and
    without native bfloat16 autocast is many times slower. The inferer's default and the bundles' ``amp``
    setting (``amp_default(@device, True)`` in ``train.json``)."""
    kind = torch.device(device).type
    return kind == "cuda" or (training and kind == "cpu" and cpu_has_native_bf16())


def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """The autocast type: float16 on CUDA, bfloat16 elsewhere (the CPU's only autocast type)."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def channels_last_default(device: torch.device | str, training: bool = False) -> bool:
    """Channels-last by default for inference on every device (measured 1.4x in 2D and 1.2x in 3D on the CPU,
    ``benchmarks/results/precision.md``; the layout cuDNN prefers), not for training (measured no faster on the
    CPU: the backward pass gains nothing)."""
    return not training


def to_channels_last(x: Any) -> Any:
    """A module or a 4D/5D tensor in channels-last memory format (2D: NHWC, 3D: NDHWC); anything else as is."""
    if isinstance(x, nn.Module):
        dims = {p.ndim for p in x.parameters()}
        return x.to(memory_format=torch.channels_last_3d if 5 in dims else torch.channels_last)  # type: ignore[call-overload]
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if isinstance(x, torch.Tensor) and x.ndim == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


class AutocastInferer(Inferer):
    """Runs another inferer (default: one plain network call) under autocast and/or with channels-last input;
    returns float32 in the default memory format, so that losses and metrics see what they always see.

    Used for training on the CPU, where MONAI's trainer autocasts to CUDA only. Backward passes through the
    autocast graph as usual; bfloat16 needs no gradient scaling.

    Args:
        inferer: the inferer to wrap (``None``: ``network(inputs)``).
        amp: autocast (float16 on CUDA, bfloat16 on the CPU).
        channels_last: give the network channels-last input.
    """

    def __init__(self, inferer: Inferer | None = None, amp: bool = False, channels_last: bool = False) -> None:
        super().__init__()
        self.inferer = inferer
        self.amp, self.channels_last = as_bool(amp, "amp"), as_bool(channels_last, "channels_last")

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> Any:
        x = to_channels_last(inputs) if self.channels_last else inputs
        with torch.autocast(device_type=x.device.type, dtype=autocast_dtype(x.device), enabled=self.amp):
            out = self.inferer(x, network, *args, **kwargs) if self.inferer is not None else network(x, *args, **kwargs)
        if isinstance(out, torch.Tensor):
            out = out.float().contiguous()
        return out
