"""Label conversion for training: data-set label conventions to class indices, checked."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type
from skimage.segmentation import find_boundaries

from medunet.transforms.functional.weight_map import separate_touching
from medunet.utils.enums import LabelRule, look_up

__all__ = ["LabelRule", "LabelToClassesd", "ToGrayscaled", "instance_borders", "label_to_classes"]


def label_to_classes(
    label: np.ndarray, rule: str | LabelRule, num_classes: int = 2, threshold: float = 127.0
) -> np.ndarray:
    """Applies a :class:`LabelRule` to an array; raises ``ValueError`` on values the rule does not expect."""
    kind = look_up(rule, LabelRule, "label_rule")
    array = np.asarray(label)
    if array.dtype.kind == "f" and (not np.all(np.isfinite(array)) or not np.all(array == np.round(array))):
        raise ValueError("label holds non-integer or NaN values; labels must be integer-valued")
    if kind == LabelRule.THRESHOLD:
        if array.size and 0 < array.max() <= threshold:
            raise ValueError(
                f"label values {np.unique(array)[:10].tolist()} are all at or below the threshold {threshold:g}, so "
                "every voxel would be background; for a 0/1 (or 0..n class) mask set label_rule to 'classes', or "
                "lower the threshold"
            )
        return (array > threshold).astype(np.int64)
    if kind == LabelRule.INSTANCES:
        if array.size and array.min() < 0:
            raise ValueError(f"instance labels must be >= 0, found {array.min()}")
        spatial = array[0] if array.ndim in (3, 4) and array.shape[0] == 1 else array
        carved = separate_touching(spatial.astype(np.int64))
        return (carved > 0).astype(np.int64).reshape(array.shape)
    if kind == LabelRule.INSTANCE_BORDERS:
        if num_classes != 3:
            raise ValueError(
                f"label_rule='instance_borders' makes 3 classes (background, interior, border); set num_classes to 3, "
                f"not {num_classes}"
            )
        if array.size and array.min() < 0:
            raise ValueError(f"instance labels must be >= 0, found {array.min()}")
        return instance_borders(array.astype(np.int64))
    values = np.unique(array)
    unexpected = values[(values < 0) | (values >= num_classes)]
    if unexpected.size:
        raise ValueError(
            f"label values {unexpected[:10].tolist()} are outside the classes 0..{num_classes - 1}; set label_rule "
            "to 'threshold' (e.g. 0/255 masks) or 'instances' (instance labels), or raise num_classes"
        )
    return array.astype(np.int64)


def instance_borders(instances: np.ndarray) -> np.ndarray:
    """Instance labels as classes 0 (background), 1 (object interior) and 2 (object border: an object's voxels
    with a face neighbour outside the object). ``find_boundaries`` of scikit-image finds the borders."""
    borders = find_boundaries(instances, connectivity=1, mode="inner") & (instances > 0)
    classes = (instances > 0).astype(np.int64)
    classes[borders] = 2
    return classes


class LabelToClassesd(MapTransform):
    """Dictionary form of :func:`label_to_classes`; with ``instances_key`` the original instance labels are
    kept under that key (for the weight map)."""

    def __init__(
        self,
        keys: KeysCollection,
        rule: str = "classes",
        num_classes: int = 2,
        threshold: float = 127.0,
        instances_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.rule = look_up(rule, LabelRule, "label_rule")
        self.num_classes, self.threshold, self.instances_key = num_classes, threshold, instances_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            array = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
            if self.instances_key is not None:
                d[self.instances_key] = label
            try:
                classes = label_to_classes(array, self.rule, self.num_classes, self.threshold)
            except ValueError as err:
                source = getattr(label, "meta", {}).get("filename_or_obj", key)
                raise ValueError(f"{source}: {err}") from None
            d[key] = convert_to_dst_type(
                classes, dst=label, dtype=torch.int64 if isinstance(label, torch.Tensor) else np.int64
            )[0]
        return d


class AddChanneld(MapTransform):
    """Adds the channel axis to images that arrive without one: an image with ``spatial_dims`` axes becomes
    ``(1, *S)``; one with a channel already (``spatial_dims + 1`` axes, channel first) passes unchanged.

    medunet's loader returns channel-first images, but other loaders do not (MONAI Deploy's series-to-volume
    operator hands over ``(x, y, z)``); MONAI's EnsureChannelFirstd decides from the metadata's
    ``original_channel_dim``, which says "no channel" for a DICOM series even after medunet's loader added
    one, so it would add a second. The number of axes decides here.
    """

    def __init__(self, keys: KeysCollection, spatial_dims: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        self.spatial_dims = spatial_dims

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if img.ndim == self.spatial_dims:
                d[key] = img[None]
            elif img.ndim != self.spatial_dims + 1:
                raise ValueError(
                    f"'{key}' has shape {tuple(img.shape)}; a {self.spatial_dims}D network takes {self.spatial_dims} "
                    f"spatial axes, with or without a leading channel axis"
                )
        return d


class ToGrayscaled(MapTransform):
    """RGB(A) images ``(3 or 4, *S)`` to one luminance channel (ITU-R BT.601); alpha is dropped; one-channel
    images pass unchanged. For a network of ``in_channels`` > 1 (e.g. a study's T1post and FLAIR series as two
    channels) images pass unchanged when they have that many channels, and anything else is an error."""

    def __init__(self, keys: KeysCollection, in_channels: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.in_channels = in_channels

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if self.in_channels > 1:
                if img.shape[0] != self.in_channels:
                    source = getattr(img, "meta", {}).get("filename_or_obj", key)
                    raise ValueError(
                        f"{source}: the image has {img.shape[0]} channel(s), the network takes in_channels="
                        f"{self.in_channels}; give a multi-series study with channel_series (one SeriesDescription "
                        "pattern per channel) or an image file with that many channels"
                    )
                continue
            if img.shape[0] in (3, 4):
                weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).reshape(3, *([1] * (img.ndim - 1)))
                t = torch.as_tensor(img[:3], dtype=torch.float32)
                gray = (t * weights).sum(0, keepdim=True)
                d[key] = (
                    convert_to_dst_type(gray, dst=img, dtype=torch.float32)[0]
                    if isinstance(img, torch.Tensor)
                    else gray.numpy()
                )
            elif img.shape[0] != 1:
                raise ValueError(f"'{key}' has {img.shape[0]} channels; ToGrayscaled takes 1, 3 (RGB) or 4 (RGBA)")
        return d
