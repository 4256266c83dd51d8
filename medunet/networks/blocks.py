"""Building blocks of the valid-convolution U-Net (Ronneberger et al. 2015, section 2; Çiçek et al. 2016).

Layer types come from MONAI's dimension-generic factories so one code path serves 2D and 3D.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Norm
from torch import nn

from medunet.utils.enums import NormType

__all__ = ["UpConv", "ValidConvBlock", "center_crop", "init_he_normal"]


def _norm_layer(norm: NormType | None, spatial_dims: int, channels: int) -> nn.Module | None:
    if norm is None:
        return None
    if norm == NormType.BATCH:
        return Norm[Norm.BATCH, spatial_dims](channels)
    return Norm[Norm.INSTANCE, spatial_dims](channels, affine=True)


class ValidConvBlock(nn.Sequential):
    """``convs`` unpadded ``kernel_size`` convolutions, each followed by [norm +] ReLU.

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *(S - convs * (kernel_size - 1 - 2 * padding)))``.
    ``padding=0`` is the paper's block; ``padding=(kernel_size - 1) // 2`` gives the same-padded block that
    the benchmarks use to compare with padded U-Nets of identical widths.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        norm: NormType | None = None,
        kernel_size: int = 3,
        convs: int = 2,
        padding: int = 0,
    ) -> None:
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(convs):
            # A bias is redundant before a normalisation layer that re-centres the activations.
            layers.append(
                Conv[Conv.CONV, spatial_dims](channels, out_channels, kernel_size, padding=padding, bias=norm is None)
            )
            norm_layer = _norm_layer(norm, spatial_dims, out_channels)
            if norm_layer is not None:
                layers.append(norm_layer)
            layers.append(nn.ReLU(inplace=True))
            channels = out_channels
        super().__init__(*layers)


class UpConv(nn.Module):
    """The paper's "2x2 up-convolution": a transposed convolution with kernel = stride = pool size."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, scale: Sequence[int]) -> None:
        super().__init__()
        self.conv = Conv[Conv.CONVTRANS, spatial_dims](
            in_channels, out_channels, kernel_size=tuple(scale), stride=tuple(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def center_crop(x: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Centre-crops the spatial dimensions of ``x`` (B, C, *S) to ``spatial_shape``.

    The geometry guarantees that every size difference is even, so the crop is symmetric.
    """
    slices: list[slice] = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], spatial_shape):
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]


def init_he_normal(module: nn.Module) -> None:
    """He initialisation as in the paper (section 3): weights ~ N(0, sqrt(2 / N)), N = incoming nodes.

    For a convolution N = kernel volume x input channels. For a transposed convolution whose stride
    equals its kernel (the up-convolution) each output voxel receives exactly one tap per input
    channel, so N = input channels; torch's ``kaiming_normal_`` would use the kernel volume x output
    channels there, hence the explicit computation. Biases start at zero; norms at identity.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvTransposeNd):
            std = math.sqrt(2.0 / m.in_channels)
        elif isinstance(m, nn.modules.conv._ConvNd):
            std = math.sqrt(2.0 / (m.in_channels // m.groups * math.prod(m.kernel_size)))
        elif isinstance(m, (nn.modules.batchnorm._NormBase,)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            continue
        else:
            continue
        nn.init.normal_(m.weight, mean=0.0, std=std)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
