"""The OME-Zarr layout of a volume's segmentation: the class (or score) image, its NGFF label image of instances,
and the record of the job that made it.

One folder holds everything a viewer (napari, an OME-Zarr browser) and a resumed run read::

    out.zarr/                  OME-Zarr 0.5 image: array 0 (classes; or c + spatial axes for scores) with the
                               input's axes, voxel size and origin; attribute "medunet": {"job": <record>}
    out.zarr/labels/instances  NGFF image-label (uint32 instances) whose source is the image above
    out.zarr/.medunet/         the run's working files (block markers, provisional labels), not image data

The record is what makes a rerun resume only the same job (same input, network and settings) instead of
overwriting another's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medunet.io.volumes import Volume, create_volume, open_volume

__all__ = ["INSTANCES", "STATE", "add_label_image", "create_segmentation_volume", "stored_job"]

STATE = ".medunet"
"""The folder of a run's working files inside the output."""

INSTANCES = "labels/instances"
"""The instance label image inside the output."""


def create_segmentation_volume(
    path: str | Path,
    source: Volume,
    image_shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int],
    channels: int | None,
    record: dict,
    instances: bool = False,
    overwrite: bool = False,
    name: str = "segmentation",
) -> None:
    """Creates the output of a segmentation of ``source``: the image (``channels`` scores per voxel, or one class
    label when ``channels`` is None) on the source's spatial axes, voxel size and origin, the job ``record``, the
    working folder, and with ``instances`` the empty instance label image.

    Raises:
        :class:`~medunet.io.volumes.VolumeError`: ``path`` exists (without ``overwrite``), is or lies inside the
        source, or cannot be written.
    """
    out = Path(path)
    spatial = source.spatial_axes
    if channels is None:
        axes, shape, out_chunks = spatial, tuple(image_shape), tuple(chunks)
    else:
        axes, shape, out_chunks = ("c", *spatial), (channels, *image_shape), (channels, *chunks)
    create_volume(
        out, shape, dtype, out_chunks, axes, source.voxel_size, source.origin, source.unit, name=name,
        attributes={"job": record}, overwrite=overwrite, protect=[source.path],
    )  # fmt: skip
    (out / STATE).mkdir()
    if instances:
        add_label_image(out, chunks)


def add_label_image(path: str | Path, chunks: Sequence[int], name: str = "instances") -> Any:
    """The NGFF image-label ``labels/<name>`` (uint32, the image's spatial axes, voxel size and origin, listed in
    ``labels/``'s attributes) of the OME-Zarr image at ``path``: created empty when absent, returned as an array."""
    import zarr

    out = Path(path)
    target = out / "labels" / name
    if (target / "0" / "zarr.json").exists():
        return zarr.open_array(str(target / "0"), mode="r+")
    image = open_volume(out)
    root = zarr.open_group(str(out), mode="r+")
    labels = root.require_group("labels")
    ome_labels: Any = dict(labels.attrs).get("ome", {})
    listed = list(ome_labels.get("labels", []))
    labels.attrs["ome"] = {"version": "0.5", "labels": sorted({*listed, name})}
    array = create_volume(
        target, image.spatial_shape, np.uint32, tuple(chunks), image.spatial_axes, image.voxel_size, image.origin,
        image.unit, name=name, overwrite=True,
    )  # fmt: skip
    group = zarr.open_group(str(target), mode="r+")
    ome: Any = dict(group.attrs)["ome"]
    ome["image-label"] = {"version": "0.5", "source": {"image": "../../"}}
    group.attrs["ome"] = ome
    return array


def stored_job(path: str | Path) -> dict | None:
    """The job record of a segmentation volume at ``path``; None when there is none (not medunet's output)."""
    import zarr

    try:
        stored: Any = dict(zarr.open_group(str(path), mode="r").attrs).get("medunet", {})
        return stored.get("job")
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return None
