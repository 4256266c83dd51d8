"""The valid-convolution U-Net and its size arithmetic."""

from medunet.networks.geometry import AxisGeometry, UNetGeometry, normalize_pool_sizes
from medunet.networks.unet import ValidUNet

__all__ = ["AxisGeometry", "UNetGeometry", "ValidUNet", "normalize_pool_sizes"]
