"""Intensity presets for CT (HU window), MR (percentile clip + z-score) and microscopy/EM (0-1)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import (
    ClipIntensityPercentiles,
    Compose,
    MapTransform,
    NormalizeIntensity,
    ScaleIntensity,
    ScaleIntensityRange,
    Transform,
)

from medunet.utils.enums import IntensityPreset, look_up

__all__ = ["IntensityPreset", "IntensityPresetd", "intensity_preset"]


def intensity_preset(preset: str | IntensityPreset, **params: Any) -> Transform:
    """The MONAI transform for a preset; ``params`` override its defaults (CT: ``level=40, width=400``;
    MR: ``lower=0.5, upper=99.5, nonzero=False``)."""
    kind = look_up(preset, IntensityPreset, "preset")
    if kind == IntensityPreset.CT:
        unknown = set(params) - {"level", "width"}
        level, width = float(params.get("level", 40.0)), float(params.get("width", 400.0))
        if width <= 0:
            raise ValueError(f"CT window width must be > 0 HU, got {width}")
        transform: Transform = ScaleIntensityRange(level - width / 2, level + width / 2, 0.0, 1.0, clip=True)
    elif kind == IntensityPreset.MR:
        unknown = set(params) - {"lower", "upper", "nonzero"}
        transform = Compose(
            [
                ClipIntensityPercentiles(params.get("lower", 0.5), params.get("upper", 99.5), channel_wise=True),
                NormalizeIntensity(nonzero=bool(params.get("nonzero", False)), channel_wise=True),
            ]
        )
    else:
        unknown = set(params)
        transform = ScaleIntensity(minv=0.0, maxv=1.0, channel_wise=True)
    if unknown:
        raise ValueError(f"intensity preset {kind.value!r} does not take {sorted(unknown)}")
    return transform


class IntensityPresetd(MapTransform):
    """Dictionary form of :func:`intensity_preset`."""

    def __init__(self, keys: KeysCollection, preset: str, allow_missing_keys: bool = False, **params: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = intensity_preset(preset, **params)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
