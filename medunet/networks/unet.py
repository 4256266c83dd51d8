"""The original valid-convolution U-Net, 2D (Ronneberger et al. 2015) and 3D (Çiçek et al. 2016)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from medunet.networks.blocks import UpConv, ValidConvBlock, center_crop, init_he_normal
from medunet.networks.geometry import UNetGeometry, normalize_pool_sizes
from medunet.utils.enums import NormType, look_up
from medunet.utils.values import positive_int, positive_ints

__all__ = ["ValidUNet"]


class ValidUNet(nn.Module):
    """U-Net with unpadded convolutions: the output is smaller than the input by a fixed margin.

    Architecture (paper section 2, Fig. 1), for ``depth = len(features)`` levels:

    - contracting path: per level two unpadded 3x3(x3) convolutions + ReLU, then max-pooling of
      ``pool_sizes[level]`` (2x2 in the paper); channels follow ``features`` (doubling in the paper);
    - dropout at the end of the contracting path, on the outputs of the two deepest levels
      (the original Caffe model's placement);
    - expanding path: a transposed convolution (kernel = stride = pool size) from ``features[l + 1]`` to
      ``features[l]`` channels, concatenation with the centre-cropped skip feature map of level ``l``,
      two unpadded convolutions + ReLU;
    - a final 1x1 convolution to ``out_channels`` logits.

    With the defaults (2D, 5 levels, 64 base features) a 572x572 input gives a 388x388 output through
    23 convolution layers and about 31.0 M parameters. The 3D U-Net (Çiçek et al.) is
    ``ValidUNet(3, features=(32, 64, 128, 256), norm="batch")``: 132x132x116 -> 44x44x28.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels.
        out_channels: output classes (logits, no softmax).
        features: channels per level; ``len(features)`` is the depth.
        dropout: dropout probability at the end of the contracting path (0 disables it).
        norm: ``None`` (2D paper), ``"batch"`` (3D paper) or ``"instance"``.
        pool_sizes: pooling size per level transition, an int or one int per axis each, e.g.
            ``((2, 2, 1), (2, 2, 1), (2, 2, 2))`` for thick slices; ``None`` pools by 2 everywhere.

    Shapes:
        ``(B, in_channels, *S) -> (B, out_channels, *self.output_shape(S))``; ``S`` must be a valid input
        shape (see :mod:`medunet.networks.geometry`), else ``forward`` raises ``ValueError`` naming the
        nearest valid sizes.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        dropout: float = 0.5,
        norm: str | NormType | None = None,
        pool_sizes: Sequence[int | Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        features = positive_ints(features, "features", "[64, 128, 256, 512, 1024]")
        in_channels = positive_int(in_channels, "in_channels")
        out_channels = positive_int(out_channels, "out_channels")
        spatial_dims = positive_int(spatial_dims, "spatial_dims")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        norm_type = None if norm is None else look_up(norm, NormType, "norm")
        pools = normalize_pool_sizes(pool_sizes, len(features), spatial_dims)

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.geometry = UNetGeometry(pools, spatial_dims)

        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        channels = in_channels
        for level, f in enumerate(features):
            self.down.append(ValidConvBlock(spatial_dims, channels, f, norm_type))
            if level < len(features) - 1:
                self.pools.append(Pool[Pool.MAX, spatial_dims](kernel_size=pools[level], stride=pools[level]))
            channels = f
        # The two deepest levels' outputs (the deepest skip and the bottleneck) get dropout.
        self.dropout_levels = frozenset(range(max(0, len(features) - 2), len(features))) if dropout > 0 else frozenset()
        # Element-wise dropout as in the Caffe model (not channel-wise Dropout2d/3d).
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        self.up = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        for level in reversed(range(len(features) - 1)):
            self.up.append(UpConv(spatial_dims, features[level + 1], features[level], pools[level]))
            self.up_convs.append(ValidConvBlock(spatial_dims, 2 * features[level], features[level], norm_type))
        self.head = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1)
        init_he_normal(self)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for a valid spatial input shape (``ValueError`` otherwise)."""
        return self.geometry.output_shape(input_shape)

    def input_shape_for(self, output_shape: Sequence[int]) -> tuple[int, ...]:
        """Smallest valid spatial input shape whose output covers ``output_shape``."""
        return self.geometry.input_shape_for(output_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"ValidUNet({self.spatial_dims}D) expects a (B, C, {', '.join('S' * self.spatial_dims)}) tensor, "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"ValidUNet expects {self.in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})"
            )
        self.geometry.check_input_shape(x.shape[2:])

        skips: list[torch.Tensor] = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level in self.dropout_levels:
                x = self.dropout(x)
            if level < len(self.pools):
                skips.append(x)
                x = self.pools[level](x)
        for up, convs in zip(self.up, self.up_convs):
            x = up(x)
            skip = center_crop(skips.pop(), x.shape[2:])
            x = convs(torch.cat([skip, x], dim=1))
        return self.head(x)
