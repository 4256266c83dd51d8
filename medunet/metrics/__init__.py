"""Segmentation metrics beyond MONAI's Dice/IoU: pixel error, Rand error, the ISBI 2012 challenge's thinned
scores, object-level F1 and the instance metrics (average precision over IoU thresholds, panoptic quality,
merged and split objects)."""

from medunet.metrics.instances import AP_THRESHOLDS, instance_scores, iou_matrix, match_count
from medunet.metrics.isbi import ISBI_THRESHOLDS, isbi_scores, thin_borders, vrand_vinfo
from medunet.metrics.measurements import instance_measurements, segment_measurements
from medunet.metrics.segmentation import (
    InstanceMetric,
    ObjectF1Metric,
    PixelErrorMetric,
    RandErrorMetric,
    object_f1,
    pixel_error,
    rand_error,
    rand_error_instances,
)

__all__ = [
    "AP_THRESHOLDS",
    "ISBI_THRESHOLDS",
    "InstanceMetric",
    "ObjectF1Metric",
    "PixelErrorMetric",
    "RandErrorMetric",
    "instance_measurements",
    "instance_scores",
    "iou_matrix",
    "isbi_scores",
    "match_count",
    "object_f1",
    "pixel_error",
    "rand_error",
    "rand_error_instances",
    "segment_measurements",
    "thin_borders",
    "vrand_vinfo",
]
