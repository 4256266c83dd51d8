"""Segmentation metrics beyond MONAI's Dice/IoU: pixel error, ISBI 2012 Rand error, object-level F1."""

from medunet.metrics.segmentation import (
    ObjectF1Metric,
    PixelErrorMetric,
    RandErrorMetric,
    object_f1,
    pixel_error,
    rand_error,
)

__all__ = ["ObjectF1Metric", "PixelErrorMetric", "RandErrorMetric", "object_f1", "pixel_error", "rand_error"]
