"""Numerical precision and memory layout of a network pass: precision presets, autocast and channels-last.

Inference runs in one of three presets (:class:`~medunet.utils.enums.Precision`): ``float32``, the default and the
exactness contract (tiled equals whole up to float32 rounding); ``bfloat16``, on CUDA or on a CPU with native
bfloat16 instructions (AVX512-BF16 / AMX, which oneDNN uses); ``float16``, on CUDA. Elsewhere PyTorch emulates
bfloat16 and a pass is many times slower than float32 (measured in ``benchmarks/precision.py``), so
:func:`precision_dtype` refuses the preset there rather than running slowly. Training's mixed precision (the
bundles' ``amp`` setting) autocasts to float16 on CUDA and to bfloat16 on a native CPU, and is on by default
there (:func:`amp_default`). Channels-last memory format (NHWC / NDHWC) lets oneDNN and cuDNN use their fastest
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

from medunet.utils.enums import Precision, look_up
from medunet.utils.values import as_bool

__all__ = [
    "AutocastInferer",
    "amp_default",
    "amp_precision",
    "autocast_dtype",
    "channels_last_default",
    "cpu_has_native_bf16",
    "precision_dtype",
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
    """Mixed precision by default for training: on CUDA (float16) and on a CPU with native bfloat16 (AVX512-BF16 /
    AMX; measured faster there with the same validation accuracy, ``benchmarks/results/precision.md``): the
    bundles' ``amp`` setting (``amp_default(@device, True)`` in ``train.json``). Inference is float32 on every
    device unless a preset asks otherwise (``training=False`` gives False): float32 is the overlap-tile inferer's
    exactness contract."""
    kind = torch.device(device).type
    return training and (kind == "cuda" or (kind == "cpu" and cpu_has_native_bf16()))


def precision_dtype(precision: str | Precision, device: torch.device | str) -> torch.dtype | None:
    """The autocast type of an inference preset on ``device``: None for ``float32`` (no autocast), else
    ``torch.bfloat16`` or ``torch.float16``.

    Raises:
        ValueError: an unknown preset, or one the device cannot run fast: ``bfloat16`` on a CPU without native
            bfloat16 (emulated there, many times slower than float32) or on a CUDA GPU without it (before
            Ampere), ``float16`` anywhere but CUDA. The message names the preset and what to use instead.
    """
    preset = look_up(precision, Precision, "precision")
    kind = torch.device(device).type
    if preset == Precision.FLOAT32:
        return None
    if preset == Precision.BFLOAT16:
        if kind == "cpu" and not cpu_has_native_bf16():
            raise ValueError(
                "precision='bfloat16' needs a CPU with native bfloat16 (AVX512-BF16 or AMX); this CPU has neither, "
                "so PyTorch would emulate it, many times slower than float32 (benchmarks/results/precision.md). Use "
                "precision='float32' (the default) here, or run on such a CPU or on a CUDA GPU"
            )
        if kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(
                "precision='bfloat16' needs a CUDA GPU with bfloat16 (Ampere or newer); use precision='float16' "
                "or 'float32' on this GPU"
            )
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"precision='bfloat16' runs on the CPU or CUDA, not on {kind!r}; use 'float32'")
        return torch.bfloat16
    if kind != "cuda":
        raise ValueError(
            f"precision='float16' runs on CUDA GPUs only (the device here is {kind!r}); on a CPU use 'bfloat16' "
            "(where the CPU has native bfloat16) or 'float32' (the default)"
        )
    return torch.float16


def amp_precision(amp: bool, device: torch.device | str) -> Precision:
    """The inference preset of validation during training with ``amp`` on ``device``: the device's autocast type
    where it runs fast (CUDA: float16; a CPU with native bfloat16: bfloat16), else ``float32`` (no AMP, or a CPU
    that would emulate bfloat16: training was warned about, validation need not be slow too)."""
    if not as_bool(amp, "amp"):
        return Precision.FLOAT32
    kind = torch.device(device).type
    if kind == "cuda":
        return Precision.FLOAT16
    return Precision.BFLOAT16 if kind == "cpu" and cpu_has_native_bf16() else Precision.FLOAT32


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
