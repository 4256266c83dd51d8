"""Image reading shared by the peers' scripts (``peers_stardist.py``, ``peers_cellpose.py``).

They run in the peers' own environments, which have numpy and Pillow but not medunet, so this module imports
nothing else; the scripts find it beside them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def gray(path: str) -> np.ndarray:
    """The image as float32 grey: RGB(A) as the mean of its colour channels, as medunet's ``ToGrayscaled``."""
    image = np.asarray(Image.open(path))
    if image.ndim == 3:
        image = image[..., :3].astype(np.float32).mean(axis=-1)
    return image.astype(np.float32)
