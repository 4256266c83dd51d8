"""Loading transform (dictionary form) over :func:`medunet.io.load_image`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple

from medunet.io.image import load_image

__all__ = ["LoadImageOrSeriesd"]


class LoadImageOrSeriesd(MapTransform):
    """Loads NIfTI files, 2D images or DICOM series folders (one per key) channel-first with metadata.

    ``load_kwargs`` go to :func:`medunet.io.load_image` (``series_uid``, ``description``, ``axcodes``,
    ``spacing``, ``dtype``, ...). Keys listed in ``label_keys`` keep their stored integer type and are
    resampled with nearest-neighbour interpolation.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_keys: KeysCollection = (),
        allow_missing_keys: bool = False,
        **load_kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_keys = set(ensure_tuple(label_keys))
        self.load_kwargs = load_kwargs

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            kwargs = dict(self.load_kwargs)
            if key in self.label_keys:
                kwargs.setdefault("dtype", None)
                kwargs["resample_mode"] = "nearest"
            d[key] = load_image(d[key], **kwargs)
        return d
