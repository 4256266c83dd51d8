"""The valid-convolution U-Net, its size arithmetic, and reading checkpoints into it."""

from medunet.networks.geometry import AxisGeometry, UNetGeometry, normalize_pool_sizes
from medunet.networks.unet import ValidUNet
from medunet.networks.weights import load_weights, read_checkpoint

__all__ = ["AxisGeometry", "UNetGeometry", "ValidUNet", "load_weights", "normalize_pool_sizes", "read_checkpoint"]
