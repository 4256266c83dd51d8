"""Option names used across medunet, as ``StrEnum``s so that an unknown value lists the valid ones."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

__all__ = ["NormType", "OutputMode", "PaddingMode", "look_up"]

E = TypeVar("E", bound=StrEnum)


class NormType(StrEnum):
    """Normalisation after each convolution: none (2D paper), batch (3D U-Net paper) or instance."""

    BATCH = "batch"
    INSTANCE = "instance"


class PaddingMode(StrEnum):
    """How an image is extended beyond its border before tiling.

    ``symmetric`` mirrors including the edge voxel (the paper's mirroring, Fig. 2), ``reflect`` mirrors
    excluding it, ``edge`` repeats the edge voxel, ``constant`` pads with zeros. Mirroring repeats as
    often as needed, so it also works when the margin is larger than the image.
    """

    SYMMETRIC = "symmetric"
    REFLECT = "reflect"
    EDGE = "edge"
    CONSTANT = "constant"


class OutputMode(StrEnum):
    """What the inferer returns: raw logits or softmax probabilities."""

    LOGITS = "logits"
    PROBABILITIES = "probabilities"


def look_up(value: object, enum: type[E], name: str) -> E:
    """``enum(value)``, or a ``ValueError`` naming the parameter and listing the valid options."""
    if isinstance(value, enum):
        return value
    try:
        return enum(str(value).lower())
    except ValueError:
        options = ", ".join(repr(m.value) for m in enum)
        raise ValueError(f"{name}={value!r} is not supported; valid options are {options}") from None
