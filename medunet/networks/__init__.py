"""The valid-convolution U-Net, its size arithmetic, and reading checkpoints into it.

Names are imported on first use (:mod:`medunet.utils.lazy`).
"""

from typing import TYPE_CHECKING

from medunet.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from medunet.networks.geometry import AxisGeometry, UNetGeometry, normalize_pool_sizes
    from medunet.networks.unet import ValidUNet
    from medunet.networks.weights import load_weights, read_checkpoint

__all__ = ["AxisGeometry", "UNetGeometry", "ValidUNet", "load_weights", "normalize_pool_sizes", "read_checkpoint"]

__getattr__ = lazy_exports(
    __name__,
    {
        "AxisGeometry": "medunet.networks.geometry",
        "UNetGeometry": "medunet.networks.geometry",
        "normalize_pool_sizes": "medunet.networks.geometry",
        "ValidUNet": "medunet.networks.unet",
        "load_weights": "medunet.networks.weights",
        "read_checkpoint": "medunet.networks.weights",
    },
)
