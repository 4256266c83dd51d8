"""Every option name of medunet, as a ``StrEnum``, so that an unknown value lists the valid ones.

One home for these conventions (MONAI keeps its own in ``monai/utils/enums.py``): a function that takes an
option accepts the enum member or its string value and calls :func:`look_up`, whose error names the
parameter, the bad value and the valid options.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

__all__ = [
    "CheckpointMode",
    "InstanceSplit",
    "IntensityPreset",
    "IrregularSpacing",
    "LabelRule",
    "Modality",
    "NormType",
    "OptimizerName",
    "OutputMode",
    "PaddingMode",
    "Precision",
    "ProbabilityDtype",
    "QueryLevel",
    "RetrieveMethod",
    "SegType",
    "VolumeOutput",
    "WeightsDtype",
    "look_up",
    "option_values",
]

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


class InstanceSplit(StrEnum):
    """How touching objects are split when a class prediction becomes instance labels.

    ``none``: connected components only; ``distance``: seeded watershed on the distance to the background,
    one seed per distance maximum; ``probability``: seeded watershed on the object probability, seeds where
    the network is confident; ``borders``: for a network trained with ``label_rule="instance_borders"``
    (classes background / object interior / object border, as the 2018 Data Science Bowl's winners), seeds are
    the components of the interior class, grown over interior and border.
    """

    NONE = "none"
    DISTANCE = "distance"
    PROBABILITY = "probability"
    BORDERS = "borders"


class OutputMode(StrEnum):
    """What the inferer returns: raw logits or softmax probabilities."""

    LOGITS = "logits"
    PROBABILITIES = "probabilities"


class VolumeOutput(StrEnum):
    """What blockwise inference writes per voxel: ``labels`` (the class with the largest score, uint8),
    ``probabilities`` (softmax per class, as uint8 0..255 or float16) or ``logits`` (float32, the exact values)."""

    LABELS = "labels"
    PROBABILITIES = "probabilities"
    LOGITS = "logits"


class Precision(StrEnum):
    """The arithmetic of an inference pass: ``float32`` (the default and the exactness contract: tiled equals whole
    up to float32 rounding), ``bfloat16`` (CUDA, or a CPU with native bfloat16: AVX512-BF16 / AMX) or ``float16``
    (CUDA); the last two autocast the network and are opt-in "fast" modes."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


class SegType(StrEnum):
    """The kind of DICOM SEG written: ``binary`` (one 1-bit frame per segment and slice, read by every viewer) or
    ``labelmap`` (one 8-bit frame per slice whose pixels are segment numbers; DICOM 2024, read by OHIF 3.10 and
    highdicom 0.24 and later)."""

    BINARY = "binary"
    LABELMAP = "labelmap"


class ProbabilityDtype(StrEnum):
    """How blockwise inference stores probabilities: ``uint8`` (0..255, a quarter of float32's size) or
    ``float16``."""

    UINT8 = "uint8"
    FLOAT16 = "float16"


class WeightsDtype(StrEnum):
    """How ``best_model.pt`` stores the network's floating-point weights: ``float32``, or ``float16`` (half the
    file, for shipped models; read back into a float32 network)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"


class IntensityPreset(StrEnum):
    """``ct``: window ``level`` +- ``width``/2 HU mapped to 0..1 (clipped); ``mr``: clip to the
    ``lower``/``upper`` percentiles, then zero mean and unit variance (over non-zero voxels with
    ``nonzero=True``); ``microscopy``: min-max to 0..1 per channel."""

    CT = "ct"
    MR = "mr"
    MICROSCOPY = "microscopy"


class LabelRule(StrEnum):
    """How a data set's label image becomes class indices.

    ``classes``: already class indices ``0..num_classes-1`` (anything else is an error);
    ``threshold``: ``label > threshold`` is class 1 (ISBI 2012: 255 = cell, 0 = membrane);
    ``instances``: instance labels (0 = background); touching objects are separated by a one-voxel
    background border (the paper's ground truth) and the result is foreground (1) / background (0);
    ``instance_borders``: instance labels become three classes, background (0), object interior (1) and object
    border (2: the object's voxels next to the background or another object), so that touching objects are
    told apart by their borders (``num_classes`` 3; instances with ``instance_split="borders"``).
    """

    CLASSES = "classes"
    THRESHOLD = "threshold"
    INSTANCES = "instances"
    INSTANCE_BORDERS = "instance_borders"


class IrregularSpacing(StrEnum):
    """What the DICOM series reader does with unevenly spaced slices (a missing slice, a gap):
    ``error`` refuses the series, ``warn`` logs a warning and uses the median step."""

    ERROR = "error"
    WARN = "warn"


class OptimizerName(StrEnum):
    """Optimisers a bundle can train with: ``sgd`` (the paper: momentum 0.99) or ``adam``."""

    SGD = "sgd"
    ADAM = "adam"


class CheckpointMode(StrEnum):
    """Whether a larger (``max``, e.g. Dice) or a smaller (``min``, e.g. a loss) key metric is better."""

    MAX = "max"
    MIN = "min"


class RetrieveMethod(StrEnum):
    """How a series is fetched from a PACS: ``move`` (C-MOVE to medunet's storage SCP), ``get`` (C-GET on
    the same association) or ``wado`` (DICOMweb WADO-RS)."""

    MOVE = "move"
    GET = "get"
    WADO = "wado"


class QueryLevel(StrEnum):
    """DICOM query/retrieve level of a C-FIND (upper case, as the standard writes it)."""

    STUDY = "STUDY"
    SERIES = "SERIES"


class Modality(StrEnum):
    """Modalities the DICOM series writer generates (upper case, as DICOM's Modality attribute)."""

    CT = "CT"
    MR = "MR"


def option_values(enum: type[StrEnum]) -> list[str]:
    """The valid values of an option, e.g. for ``argparse`` ``choices``."""
    return [m.value for m in enum]


def look_up(value: object, enum: type[E], name: str) -> E:
    """``enum(value)`` (case-insensitive), or a ``ValueError`` naming the parameter and listing the valid options."""
    if isinstance(value, enum):
        return value
    text = str(value)
    for member in enum:
        if member.value == text or member.value.lower() == text.lower():
            return member
    options = ", ".join(repr(v) for v in option_values(enum))
    raise ValueError(f"{name}={value!r} is not supported; valid options are {options}")
