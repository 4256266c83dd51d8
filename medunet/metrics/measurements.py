"""What a segmentation found, per segment: voxel count, volume (mL; area in mm² for 2D), mean and standard
deviation of the source image's intensities (in the source's units: HU for CT), and the bounding box.

These go beside every inference output as JSON and, for DICOM input, into a TID 1500 measurement report
(:func:`medunet.io.dicom_sr.build_measurement_report`). Written here because MONAI's metrics compare a prediction
with a reference; none describes one prediction in physical units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.data.utils import affine_to_spacing

__all__ = ["INSTANCE_COLUMNS", "instance_measurements", "segment_measurements"]


def segment_measurements(
    labels: np.ndarray,
    affine: np.ndarray,
    intensities: np.ndarray | None = None,
    names: Mapping[int, str] | None = None,
) -> list[dict[str, Any]]:
    """One record per non-zero label value present in ``labels`` (spatial axes only, no channel).

    Args:
        labels: integer label image, 2D or 3D.
        affine: the image's voxel-to-world matrix (``(d + 1, d + 1)``, mm); the voxel size is its determinant.
        intensities: the source image on the same grid (the values before any normalisation), or None.
        names: label value -> segment name (the bundle's ``segment_codes``); ``"segment <n>"`` otherwise.

    Returns:
        dicts with ``segment_number``, ``label``, ``voxel_count``, ``volume_ml`` (3D) or ``area_mm2`` (2D),
        ``voxel_size_mm`` (per axis), ``mean_intensity`` / ``std_intensity`` (when ``intensities`` is given) and
        ``bounding_box`` (``voxel_min`` / ``voxel_max`` inclusive indices, ``world_min`` / ``world_max`` in mm).

    Raises:
        ValueError: shapes of ``labels`` and ``intensities`` or the affine's size do not fit.
    """
    labels = np.asarray(labels)
    dims = labels.ndim
    matrix = np.asarray(affine, dtype=np.float64)
    if dims not in (2, 3):
        raise ValueError(f"labels must be a 2D or 3D label image, got shape {labels.shape}")
    if matrix.shape[0] < dims + 1 or matrix.shape[1] < dims + 1:
        raise ValueError(f"affine of shape {matrix.shape} does not fit a {dims}D image")
    if intensities is not None and np.shape(intensities) != labels.shape:
        raise ValueError(f"intensities of shape {np.shape(intensities)} are not on the labels' grid {labels.shape}")
    linear = matrix[:dims, :dims]  # a 2D image may carry a 3x3 or a 4x4 affine; the translation is the last column
    voxel = float(abs(np.linalg.det(linear)))
    spacing = [float(v) for v in affine_to_spacing(matrix, r=dims)]
    records = []
    for value in (int(v) for v in np.unique(labels) if v != 0):
        mask = labels == value
        count = int(mask.sum())
        where = np.nonzero(mask)
        low, high = [int(w.min()) for w in where], [int(w.max()) for w in where]
        corners = np.array(np.meshgrid(*[[lo, hi] for lo, hi in zip(low, high)], indexing="ij")).reshape(dims, -1)
        world = matrix[:dims, :dims] @ corners + matrix[:dims, -1:]
        record: dict[str, Any] = {
            "segment_number": value,
            "label": (names or {}).get(value, f"segment {value}"),
            "voxel_count": count,
            ("volume_ml" if dims == 3 else "area_mm2"): count * voxel / (1000.0 if dims == 3 else 1.0),
            "voxel_size_mm": spacing,
        }
        if intensities is not None:
            values = np.asarray(intensities, dtype=np.float64)[mask]
            record["mean_intensity"], record["std_intensity"] = float(values.mean()), float(values.std())
        record["bounding_box"] = {
            "voxel_min": low,
            "voxel_max": high,
            "world_min": [float(v) for v in world.min(axis=1)],
            "world_max": [float(v) for v in world.max(axis=1)],
        }
        records.append(record)
    return records


INSTANCE_COLUMNS = (
    "label", "area_px", "area", "unit", "centroid", "bbox_min", "bbox_max", "mean_intensity", "mean_probability",
)  # fmt: skip
"""The columns of :func:`instance_measurements` (the per-instance CSV), in order."""


def instance_measurements(
    instances: np.ndarray,
    spacing: Sequence[float] | None = None,
    unit: str | None = None,
    intensities: np.ndarray | None = None,
    probability: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One record per instance of an instance label image (2D or 3D): label, area (pixels or voxels, and in
    ``unit`` squared or cubed where the ``spacing`` is known), centroid and bounding box (pixel indices, the box's
    maximum inclusive), the source image's mean intensity (channels averaged) and the instance's mean probability.

    scikit-image's ``regionprops_table`` measures; medunet adds the physical area and the columns' names.

    Args:
        instances: integer labels, 0 = background.
        spacing: pixel size per axis in ``unit`` (None: unknown, ``area`` is None).
        unit: e.g. ``"micrometer"`` or ``"mm"``.
        intensities: the source image on the same grid (values before normalisation), or None.
        probability: the object probability on the same grid (e.g. 1 - the background's softmax), or None.
    """
    from skimage.measure import regionprops_table

    labels = np.asarray(instances)
    if labels.ndim not in (2, 3):
        raise ValueError(f"instances must be a 2D or 3D label image, got shape {labels.shape}")
    layers = [np.asarray(a, dtype=np.float64) for a in (intensities, probability) if a is not None]
    for layer in layers:
        if layer.shape != labels.shape:
            raise ValueError(f"an image of shape {layer.shape} is not on the instances' grid {labels.shape}")
    if not labels.any():
        return []
    table = regionprops_table(
        labels.astype(np.int64),
        intensity_image=np.stack(layers, axis=-1) if layers else None,
        properties=["label", "area", "centroid", "bbox", *(["intensity_mean"] if layers else [])],
    )
    dims = labels.ndim
    size = float(np.prod(spacing)) if spacing is not None else None
    records = []
    for i, label in enumerate(table["label"]):
        record: dict[str, Any] = {
            "label": int(label),
            "area_px": int(table["area"][i]),
            "area": None if size is None else float(table["area"][i]) * size,
            "unit": None if size is None else f"{unit or 'unit'}^{dims}",
            "centroid": [round(float(table[f"centroid-{a}"][i]), 3) for a in range(dims)],
            "bbox_min": [int(table[f"bbox-{a}"][i]) for a in range(dims)],
            "bbox_max": [int(table[f"bbox-{a + dims}"][i]) - 1 for a in range(dims)],
            "mean_intensity": None,
            "mean_probability": None,
        }
        k = 0
        for name, given in (("mean_intensity", intensities), ("mean_probability", probability)):
            if given is not None:
                record[name] = round(float(table[f"intensity_mean-{k}"][i]), 6)
                k += 1
        records.append(record)
    return records
