"""Instance labels: from a prediction (post-processing) and from a data set's label convention (evaluation)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type

from medunet.transforms.functional.instances import instances_from_prediction
from medunet.utils.enums import InstanceSplit, LabelRule, look_up
from medunet.utils.labels import label_components

__all__ = ["LabelToInstancesd", "PredictionToInstances", "PredictionToInstancesd", "label_to_instances"]


def _numpy(x: Any) -> np.ndarray:
    # not MONAI's convert_to_numpy: it fails on bfloat16 tensors (autocast output), which are widened here
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


class PredictionToInstances(Transform):
    """Channel-first prediction ``(1, *S)`` class indices or ``(C, *S)`` probabilities -> instance labels
    ``(1, *S)`` int32 (0 = background). See :func:`instances_from_prediction` for the arguments.

    With ``use_spacing`` the distance split measures in the image's voxel size (MetaTensor affine).
    """

    def __init__(
        self,
        foreground: int = 1,
        min_size: int = 0,
        split: str | InstanceSplit = InstanceSplit.NONE,
        seed_threshold: float = 0.9,
        seed_height: float = 2.0,
        use_spacing: bool = False,
        fill: bool = False,
        seed_min_size: int = 0,
    ) -> None:
        self.split = look_up(split, InstanceSplit, "split")
        self.fill, self.seed_min_size = bool(fill), seed_min_size
        self.foreground, self.min_size = foreground, min_size
        self.seed_threshold, self.seed_height, self.use_spacing = seed_threshold, seed_height, use_spacing

    def __call__(self, prediction: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        spacing: Sequence[float] | None = None
        if self.use_spacing and hasattr(prediction, "pixdim"):
            spacing = [float(v) for v in prediction.pixdim[: prediction.ndim - 1]]
        labels = instances_from_prediction(
            _numpy(prediction),
            foreground=self.foreground,
            min_size=self.min_size,
            split=self.split,
            seed_threshold=self.seed_threshold,
            seed_height=self.seed_height,
            spacing=spacing,
            fill=self.fill,
            seed_min_size=self.seed_min_size,
        )[None]
        return convert_to_dst_type(
            labels, dst=prediction, dtype=torch.int32 if isinstance(prediction, torch.Tensor) else np.int32
        )[0]


class PredictionToInstancesd(MapTransform):
    """Dictionary form of :class:`PredictionToInstances`: writes the instance labels of ``keys`` to
    ``output_key`` (default ``"pred_instances"``), leaving the prediction in place."""

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str = "pred_instances",
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"PredictionToInstancesd takes one prediction key, got {self.keys}")
        self.output_key = output_key
        self.transform = PredictionToInstances(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.transform(d[key])
        return d


def label_to_instances(label: np.ndarray, rule: str | LabelRule, threshold: float = 127.0) -> np.ndarray:
    """A data set's spatial label ``(*S)`` as instance labels (same shape, int32): instance labels stay as they are; a
    thresholded mask (``"threshold"``) or class labels (``"classes"``: every class > 0 is an object class)
    become the connected components of their objects."""
    kind = look_up(rule, LabelRule, "label_rule")
    array = np.asarray(label)
    if kind in (LabelRule.INSTANCES, LabelRule.INSTANCE_BORDERS):
        if array.size and array.min() < 0:
            raise ValueError(f"instance labels must be >= 0, found {array.min()}")
        return array.astype(np.int32)
    mask = array > threshold if kind == LabelRule.THRESHOLD else array > 0
    return label_components(mask)


class LabelToInstancesd(MapTransform):
    """Dictionary form of :func:`label_to_instances` for channel-first labels ``(1, *S)``; used on the raw
    label that :class:`~medunet.transforms.LabelToClassesd` keeps under ``instances``."""

    def __init__(
        self, keys: KeysCollection, rule: str = "instances", threshold: float = 127.0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.rule = look_up(rule, LabelRule, "label_rule")
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            array = _numpy(label)
            if array.ndim < 3 or array.shape[0] != 1:
                raise ValueError(f"'{key}' must be a channel-first label (1, *spatial), got shape {array.shape}")
            labels = label_to_instances(array[0], self.rule, self.threshold)[None]
            d[key] = convert_to_dst_type(
                labels, dst=label, dtype=torch.int32 if isinstance(label, torch.Tensor) else np.int32
            )[0]
        return d
