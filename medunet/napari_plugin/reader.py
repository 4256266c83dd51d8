"""napari reader for medunet's outputs: NIfTI images and label maps, and OME-Zarr images with their label images.

NIfTI volumes are shown in napari's ``(z, y, x)`` order with their voxel size as the layer's scale (the inverse of
what the widget writes); files named like medunet's label outputs (``*_seg``, ``*_instances``, ``*_labels``) open
as label layers. An OME-Zarr opens lazily (dask) at full resolution with its voxel size, and every image under its
``labels/`` group as a label layer on the same grid.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LABEL_SUFFIXES", "get_reader", "read"]

LABEL_SUFFIXES = ("_seg", "_instances", "_labels", "_mask")
"""File-name endings (before the extension) that open as label layers."""

NIFTI = (".nii", ".nii.gz")

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader hook: :func:`read` for NIfTI files and OME-Zarr folders, None for anything else."""
    paths = [path] if isinstance(path, str) else list(path)
    if paths and all(_readable(Path(p)) for p in paths):
        return read
    return None


def _readable(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(NIFTI) or (path.is_dir() and name.endswith(".zarr") and _is_ome_zarr(path))


def _is_ome_zarr(path: Path) -> bool:
    from medunet.io.volumes import VolumeError, open_volume

    try:
        volume = open_volume(path)
    except (VolumeError, FileNotFoundError, OSError):
        return False
    try:
        return volume.kind == "ome-zarr"
    finally:
        volume.close()


def read(path: str | list[str]) -> list[LayerData]:
    """The layers of each path (see the module docstring)."""
    paths = [path] if isinstance(path, str) else list(path)
    layers: list[LayerData] = []
    for p in map(Path, paths):
        layers.extend(_read_nifti(p) if p.name.lower().endswith(NIFTI) else _read_ome_zarr(p))
    return layers


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".ome.zarr", ".zarr"):
        name = name.removesuffix(suffix)
    return name


def _read_nifti(path: Path) -> list[LayerData]:
    import nibabel as nib

    image: Any = nib.load(path)  # a Nifti1Image (nibabel's load is typed as its base class)
    data = np.asarray(image.dataobj)
    zooms = [float(z) for z in image.header.get_zooms()[: min(data.ndim, 3)]]
    if data.ndim >= 3:  # (x, y, z[, c]) -> (z, y, x[, c]); the translation from the affine, in that order
        order = (2, 1, 0, *range(3, data.ndim))
        data = np.transpose(data, order)
        scale = zooms[::-1]
        translate = [float(v) for v in image.affine[:3, 3]][::-1]
    else:
        data, scale, translate = data.T, zooms[::-1], [float(v) for v in image.affine[:2, 3]][::-1]
    stem = _stem(path)
    is_labels = stem.endswith(LABEL_SUFFIXES) and np.issubdtype(data.dtype, np.integer)
    spatial = 3 if data.ndim >= 3 else 2
    meta: dict[str, Any] = {"name": stem, "scale": scale[:spatial], "translate": translate[:spatial]}
    if data.ndim > spatial:  # a trailing channel axis: one layer per channel
        if is_labels:
            raise ValueError(f"{path}: a label image with {data.ndim} axes; medunet's label maps are 2D or 3D")
        meta["channel_axis"] = spatial
    return [(data, meta, "labels" if is_labels else "image")]


def _read_ome_zarr(path: Path) -> list[LayerData]:
    import dask.array as da

    from medunet.io.volumes import open_volume

    volume = open_volume(path)
    try:
        axes, voxel, origin = volume.axes, list(volume.voxel_size), list(volume.origin)
        data = da.from_zarr(volume.array)
    finally:
        volume.close()
    channel = axes.index("c") if "c" in axes else None
    meta: dict[str, Any] = {"name": _stem(path), "scale": voxel, "translate": origin}
    if "t" in axes:  # medunet writes no time axis; a length-1 one is dropped
        data = da.take(data, 0, axis=axes.index("t"))
        axes = tuple(a for a in axes if a != "t")
        channel = axes.index("c") if "c" in axes else None
    if channel is not None:
        meta["channel_axis"] = channel
    layers: list[LayerData] = [(data, meta, "image")]
    labels_root = path / "labels"
    if labels_root.is_dir():
        for folder in sorted(p for p in labels_root.iterdir() if p.is_dir()):
            label = open_volume(folder)
            try:
                array = da.from_zarr(label.array)
                layers.append(
                    (
                        array,
                        {
                            "name": f"{_stem(path)} {folder.name}",
                            "scale": list(label.voxel_size),
                            "translate": list(label.origin),
                        },
                        "labels",
                    )
                )
            finally:
                label.close()
    return layers
