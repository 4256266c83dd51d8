"""Pure functions behind medunet's transforms (numpy in, numpy out; inputs are never modified)."""

from medunet.transforms.functional.weight_map import (
    border_term_radius,
    class_balance_weights,
    separate_touching,
    unet_weight_map,
)

__all__ = ["border_term_radius", "class_balance_weights", "separate_touching", "unet_weight_map"]
