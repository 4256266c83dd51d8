"""medunet: the original valid-convolution U-Net (2D and 3D) for medical image segmentation, on MONAI.

Heavy sub-packages are imported on first use, so ``import medunet`` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
