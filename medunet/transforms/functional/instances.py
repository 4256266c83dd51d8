"""Instance labels from a semantic prediction: connected components, optionally split by seeded watershed.

A U-Net trained with the paper's weight map predicts thin background gaps between touching objects; where a
gap is predicted, connected components already separate the objects. Where it breaks by a pixel, two objects
merge. A seeded watershed splits them again: seeds are the maxima of the distance to the background (round
objects pinched at a neck) or the voxels where the network is confident (the object cores, away from the
uncertain gaps). scikit-image provides the watershed and h-maxima; the choice of seeds, the guarantee that
every component keeps at least one label, and the channel-first conventions are medunet's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from medunet.utils.enums import InstanceSplit, look_up
from medunet.utils.labels import label_components, remove_small

__all__ = ["foreground_probability", "instances_from_prediction"]


def foreground_probability(prediction: np.ndarray, foreground: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Splits a channel-first prediction into the object mask and, where available, the object probability.

    ``prediction`` is ``(1, *S)`` class indices or ``(C, *S)`` probabilities / one-hot (C > 1). The mask is
    ``argmax == foreground``; the probability is channel ``foreground`` (``None`` for class indices).
    """
    array = np.asarray(prediction)
    if array.ndim < 3:
        raise ValueError(
            f"prediction must be channel-first (C, *spatial) with 2 or 3 spatial axes, got shape {array.shape}"
        )
    if array.shape[0] == 1:
        return array[0] == foreground, None
    if not 0 <= foreground < array.shape[0]:
        raise ValueError(f"foreground class {foreground} is not one of the prediction's {array.shape[0]} channels")
    probability = array[foreground].astype(np.float32)
    return np.argmax(array, axis=0) == foreground, probability


def instances_from_prediction(
    prediction: np.ndarray,
    foreground: int = 1,
    min_size: int = 0,
    split: str | InstanceSplit = InstanceSplit.NONE,
    seed_threshold: float = 0.9,
    seed_height: float = 2.0,
    spacing: Sequence[float] | None = None,
    fill: bool = False,
    seed_min_size: int = 0,
) -> np.ndarray:
    """Instance labels ``(*S)`` (int32, 0 = background, 1..N) from a channel-first class prediction.

    Args:
        prediction: ``(1, *S)`` class indices or ``(C, *S)`` probabilities (one-hot works as well).
        foreground: the object class.
        min_size: objects smaller than this many voxels are dropped (after splitting).
        split: :class:`~medunet.utils.enums.InstanceSplit`: ``"none"``, ``"distance"`` (seeds: h-maxima of
            the distance to the background, height ``seed_height`` in the unit of ``spacing``) or
            ``"probability"`` (seeds: connected regions where the object probability exceeds
            ``seed_threshold``; needs probabilities) or ``"borders"`` (a background / interior / border
            prediction: seeds are the components where the interior probability exceeds the border probability
            by more than ``seed_threshold`` (0: the interior class of the argmax), grown over interior and border).
        seed_threshold: probability a seed must exceed (``split="probability"``); the interior's margin over the
            border a seed must exceed (``split="borders"``, in [0, 1)).
        seed_height: minimal height of a distance maximum to be a seed (``split="distance"``); larger values
            split less.
        spacing: voxel size per spatial axis for the distance transform (default 1).
        seed_min_size: seeds smaller than this many voxels are dropped before they grow (their voxels join a
            neighbouring seed's object): small seeds are mostly fragments of one object's core that would split it.
        fill: partition the whole image: the seeds grow over the background too, so that objects meet at
            one-voxel watershed lines. For images whose "background" class is a boundary between objects
            (membranes in EM); seeds under ``min_size`` voxels are dropped first. The relief is the object
            probability (the distance to the background for class indices).

    Without ``fill`` every connected component of the mask keeps at least one label: a component without a
    seed becomes one object, so splitting never deletes an object.
    """
    kind = look_up(split, InstanceSplit, "split")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    if seed_min_size < 0:
        raise ValueError(f"seed_min_size must be >= 0, got {seed_min_size}")
    if kind == InstanceSplit.BORDERS:
        if fill:
            raise ValueError("split='borders' separates objects by their predicted borders; it has no fill=True form")
        if not 0.0 <= seed_threshold < 1.0:
            raise ValueError(
                f"seed_threshold (the interior's margin over the border) must be in [0, 1), got {seed_threshold}"
            )
        return _from_borders(prediction, min_size, seed_threshold, seed_min_size)
    mask, probability = foreground_probability(prediction, foreground)
    if fill:
        return _partition(mask, probability, kind, max(min_size, seed_min_size), seed_threshold, seed_height, spacing)
    if kind == InstanceSplit.NONE or not mask.any():
        return remove_small(label_components(mask), min_size)
    if kind == InstanceSplit.PROBABILITY:
        if probability is None:
            raise ValueError(
                "split='probability' needs class probabilities (C > 1 channels), got class indices; "
                "use split='distance' or pass the softmax output"
            )
        if not 0.0 < seed_threshold < 1.0:
            raise ValueError(f"seed_threshold must be between 0 and 1, got {seed_threshold}")
        seeds = label_components(mask & (probability > seed_threshold))
        relief = -probability
    else:
        if seed_height <= 0:
            raise ValueError(f"seed_height must be > 0, got {seed_height}")
        distance = ndimage.distance_transform_edt(mask, sampling=spacing)
        seeds = label_components(h_maxima(distance, seed_height).astype(bool) & mask)
        relief = -distance
    return remove_small(_grow(relief, remove_small(seeds, seed_min_size), mask), min_size)


def _grow(relief: np.ndarray, seeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Seeds grown over ``mask`` down the ``relief`` (watershed); a component of the mask without a seed becomes
    one object, so splitting never deletes an object."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    labels = watershed(relief, markers=seeds, mask=mask, connectivity=structure).astype(np.int32)
    unseeded = mask & (labels == 0)
    if unseeded.any():
        extra = label_components(unseeded)
        labels[unseeded] = extra[unseeded] + labels.max()
    return labels


def _from_borders(prediction: np.ndarray, min_size: int, seed_threshold: float, seed_min_size: int) -> np.ndarray:
    """``split="borders"``: a background / interior / border prediction. Seeds are the components where the interior
    probability exceeds the border's by more than ``seed_threshold`` (class indices: the interior class), those of
    at least ``seed_min_size`` voxels; they grow over the object (interior and border) along the interior
    probability (the distance to the background for class indices); a component of the object without a seed
    becomes one object. (A margin of 0 is the argmax's interior; a larger one keeps two touching nuclei's cores
    apart where the border between them is faint, ``benchmarks/results/nuclei_postprocessing.md``.)"""
    array = np.asarray(prediction)
    if array.ndim < 3 or array.shape[0] not in (1, 3):
        raise ValueError(
            f"split='borders' needs a (3, *S) prediction of background, interior and border (or (1, *S) class indices "
            f"0..2) from a network trained with label_rule='instance_borders', got shape {array.shape}"
        )
    classes = array[0] if array.shape[0] == 1 else np.argmax(array, axis=0)
    mask = classes > 0
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    if array.shape[0] == 3:
        cores = mask & (array[1] - array[2] > seed_threshold)
        relief = -array[1]
    else:
        cores = classes == 1
        relief = -ndimage.distance_transform_edt(mask)
    seeds = remove_small(label_components(cores), seed_min_size)
    return remove_small(_grow(relief, seeds, mask), min_size)


def _partition(
    mask: np.ndarray,
    probability: np.ndarray | None,
    kind: InstanceSplit,
    min_size: int,
    seed_threshold: float,
    seed_height: float,
    spacing: Sequence[float] | None,
) -> np.ndarray:
    """``fill=True``: seeds (components of the mask, confident cores, or distance maxima) flooded over the whole
    image along the relief; every voxel belongs to an object."""
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    distance = ndimage.distance_transform_edt(mask, sampling=spacing)
    if kind == InstanceSplit.PROBABILITY:
        if probability is None:
            raise ValueError("split='probability' needs class probabilities (C > 1 channels), got class indices")
        seeds = remove_small(label_components(mask & (probability > seed_threshold)), min_size)
    elif kind == InstanceSplit.DISTANCE:
        seeds = label_components(h_maxima(distance, seed_height).astype(bool) & mask)
    else:
        seeds = remove_small(label_components(mask), min_size)
    if seeds.max() == 0:  # every seed was too small: the mask's components are the seeds
        seeds = label_components(mask)
    relief = -probability if probability is not None else -distance
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return remove_small(watershed(relief, markers=seeds, connectivity=structure).astype(np.int32), 0)
