"""Segmenting a napari layer's data the way ``medunet segment`` segments a file, without Qt.

The layer's data is written to a temporary file of the kind ``medunet segment`` reads, and segmented by
:func:`medunet.apps.segment.segment`, so the labels are those of ``medunet segment`` on that file, voxel for voxel:

- 2D: grayscale or RGB(A) ``uint8`` / ``uint16`` as PNG (lossless), other types as a float TIFF;
- 3D (napari's ``(z, y, x)``): NIfTI with ``(x, y, z)`` axes and the layer's scale as voxel size (results are
  transposed back);
- dask-backed layers, and layers of more than :data:`~medunet.apps.segment.LARGE_PIXELS` voxels: a zarr array in the
  layer's axis order, segmented blockwise (the exact blockwise path) into an OME-Zarr whose class and instance
  labels come back as lazy dask arrays, never whole in memory.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medunet.apps.segment import LARGE_PIXELS, model_summary, resolve_model, segment, shipped_models

__all__ = [
    "LayerError",
    "ModelChoice",
    "SegmentedLayer",
    "available_models",
    "describe_model",
    "read_features",
    "segment_layer",
]


class LayerError(ValueError):
    """The layer cannot be segmented with the chosen model (its message says why and what to do)."""


@dataclass(frozen=True)
class ModelChoice:
    """A model the widget offers: a shipped model's name (or a bundle folder), its one-line summary, its spatial
    dimensions, and the factor its PNG output multiplies class indices by (a two-class PNG is 0/255; else 1)."""

    name: str
    folder: Path
    summary: str
    spatial_dims: int
    label_scale: int = 1

    @classmethod
    def of(cls, name: str, folder: Path) -> ModelChoice:
        """The choice for the bundle in ``folder``, from one reading of its ``configs/inference.json``."""
        from medunet.engines.wiring import saved_label_scale

        config = json.loads((folder / "configs" / "inference.json").read_text(encoding="utf-8"))
        scale = saved_label_scale(str(config.get("output_ext", ".nii.gz")), int(config.get("num_classes", 2)))
        return cls(name, folder, model_summary(folder), int(config.get("spatial_dims", 2)), scale or 1)


def available_models() -> list[ModelChoice]:
    """The shipped models (those with weights), with their summaries."""
    return [ModelChoice.of(name, folder) for name, folder in shipped_models().items()]


def describe_model(model: str | Path) -> ModelChoice:
    """A shipped model's name or a bundle folder, checked (the bundle and its weights exist).

    Raises:
        ValueError / FileNotFoundError: with what :func:`~medunet.apps.segment.resolve_model` says is missing.
    """
    folder, _ = resolve_model(model)
    return ModelChoice.of(str(model), folder)


@dataclass
class SegmentedLayer:
    """What :func:`segment_layer` returns: class labels and instance labels in the layer's axis order (numpy, or
    dask for the blockwise path), the per-instance table as napari features (an ``index`` column of label values,
    row 0 the background), and the files ``medunet segment`` wrote."""

    labels: Any
    instances: Any | None
    features: dict[str, list[Any]] | None
    outputs: list[Path] = field(default_factory=list)
    blockwise: bool = False


def _is_dask(data: Any) -> bool:
    return type(data).__module__.startswith("dask.")


def _spatial_shape(data: Any, rgb: bool, dims: int, name: str, model: ModelChoice) -> tuple[int, ...]:
    """The spatial shape of a layer for a ``dims``-D model, or a :class:`LayerError` that says what fits."""
    shape = tuple(int(s) for s in data.shape)
    spatial = shape[:-1] if rgb else shape
    if rgb and dims == 3:
        raise LayerError(
            f"layer {name!r} is an RGB image (shape {shape}); model {model.name!r} segments 3D volumes. Choose a 2D "
            "model (nuclei, em_membranes) or a 3D image layer"
        )
    if len(spatial) != dims:
        kind = {2: "2D images", 3: "3D volumes"}[dims]
        fix = (
            "Choose a 3D model, or a 2D layer (a stack or a time series splits into planes with the layer's context "
            "menu, 'Split Stack')"
            if len(spatial) > dims
            else f"Choose a {len(spatial)}D model or a {dims}D layer"
        )
        raise LayerError(
            f"layer {name!r} has {len(spatial)} spatial axes (shape {shape}); model {model.name!r} segments {kind}. "
            + fix
        )
    return spatial


def read_features(table: Path, count: int | None = None) -> dict[str, list[Any]]:
    """The per-instance measurements ``<name>_instances.json`` (written by ``medunet segment`` beside its
    ``_instances.csv``) as napari features: one row per label value from 0 (the background, empty cells) to the
    largest instance, so that row ``k`` describes label ``k``. Values keep the types they were written with; a
    per-axis measurement (``centroid``, ``bbox_min``, ...) becomes a column per axis, ``centroid-0``, ``centroid-1``
    (scikit-image's ``regionprops_table`` names), as napari's features table holds one value per cell."""
    records = json.loads(table.read_text(encoding="utf-8"))["instances"]
    largest = max([int(r["label"]) for r in records] + [count or 0])
    by_label = {int(r["label"]): r for r in records}
    features: dict[str, list[Any]] = {"index": list(range(largest + 1))}
    for column in [c for c in (records[0] if records else {}) if c != "label"]:
        values = [by_label.get(k, {}).get(column) for k in range(largest + 1)]
        axes = max((len(v) for v in values if isinstance(v, list)), default=0)
        if not axes:
            features[column] = values
        for axis in range(axes):
            features[f"{column}-{axis}"] = [v[axis] if isinstance(v, list) else None for v in values]
    return features


def _write_input(data: Any, rgb: bool, scale: Sequence[float], folder: Path, name: str) -> Path:
    """The layer's data as a file ``medunet segment`` reads (see the module docstring)."""
    array = np.asarray(data)
    if array.ndim - int(rgb) == 2:
        if array.dtype in (np.uint8, np.uint16) and (not rgb or array.dtype == np.uint8):
            from PIL import Image

            path = folder / f"{name}.png"
            Image.fromarray(array).save(path)
            return path
        if rgb:
            raise LayerError(f"layer {name!r}: an RGB image of {array.dtype}; medunet reads RGB images of uint8")
        from PIL import Image

        path = folder / f"{name}.tif"
        Image.fromarray(array.astype(np.float32)).save(path)
        return path
    import nibabel as nib

    spacing = [float(s) for s in scale[-3:]][::-1]
    path = folder / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(np.transpose(array, (2, 1, 0))), np.diag([*spacing, 1.0])), path)
    return path


def _read_labels(path: Path, dims: int, scale: int = 1) -> np.ndarray:
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        image: Any = nib.load(path)  # a Nifti1Image (nibabel's load is typed as its base class)
        labels = np.asarray(image.dataobj)
        return np.ascontiguousarray(np.transpose(labels, (2, 1, 0)) if dims == 3 else labels.T)
    from PIL import Image

    labels = np.asarray(Image.open(path))
    return labels // scale if scale > 1 else labels


LABEL_FILES = (".png", ".tif", ".tiff", ".nii", ".nii.gz")


def _output(outputs: Sequence[Path], suffix: str) -> Path | None:
    """The label image among ``outputs`` whose name ends with ``suffix`` before its extension."""
    return next((p for p in outputs if p.name.endswith(LABEL_FILES) and p.name.split(".")[0].endswith(suffix)), None)


def segment_layer(
    model: str | Path,
    data: Any,
    *,
    name: str = "image",
    rgb: bool = False,
    scale: Sequence[float] | None = None,
    settings: dict[str, Any] | None = None,
    output_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> SegmentedLayer:
    """Segments a layer's data with ``model`` (a shipped model's name or a bundle folder).

    Args:
        data: the layer's array (numpy, or dask / zarr for large layers), napari's axis order.
        rgb: the last axis holds colour channels (napari's ``Image.rgb``).
        scale: the layer's scale (voxel size per axis).
        settings: further bundle settings, as ``medunet segment --override``.
        output_dir: where the outputs stay; default: a temporary folder removed afterwards (blockwise results,
            which the returned dask arrays read, then live in a folder that is kept: see ``outputs``).
        progress: called with a short message at each step.

    Raises:
        LayerError: the layer does not fit the model (dimensionality, type). ValueError / FileNotFoundError: the
            model cannot be loaded (its message names the bundle or weights).
    """
    say = progress or (lambda message: None)
    chosen = describe_model(model)
    spatial = _spatial_shape(data, rgb, chosen.spatial_dims, name, chosen)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "image"
    large = _is_dask(data) or math.prod(spatial) > LARGE_PIXELS
    keep = output_dir is not None or large
    out = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="medunet-napari-"))
    staging = Path(tempfile.mkdtemp(prefix="medunet-napari-input-"))
    try:
        if large:
            import dask.array as da

            if rgb:
                raise LayerError(f"layer {name!r}: a large RGB layer; medunet segments large grayscale volumes")
            say(f"writing {name} ({' x '.join(map(str, spatial))}) to a zarr array")
            source = staging / f"{safe}.zarr"
            da.asarray(data).rechunk(tuple(min(s, 512) for s in spatial)).to_zarr(str(source))
            say(f"segmenting {name} blockwise with {chosen.name}")
            report = segment(chosen.folder, source, out, settings={**(settings or {})}, progress=False)
            target = Path(report.outputs[str(source)][0])
            labels = da.from_zarr(str(target / "0"))
            instances_path = target / "labels" / "instances" / "0"
            instances = da.from_zarr(str(instances_path)) if instances_path.exists() else None
            return SegmentedLayer(labels, instances, None, [target], blockwise=True)
        say(f"segmenting {name} with {chosen.name}")
        source = _write_input(data, rgb, scale or (1.0,) * len(spatial), staging, safe)
        report = segment(chosen.folder, source, out, settings=settings, progress=False)
        outputs = [Path(p) for p in report.outputs[str(source)]]
        say("reading the results")
        seg = _output(outputs, "_seg")
        if seg is None:
            raise RuntimeError(f"{chosen.name} wrote no class labels for {name} (outputs: {[p.name for p in outputs]})")
        labels = _read_labels(seg, chosen.spatial_dims, chosen.label_scale)
        instance_file = _output(outputs, "_instances")
        instances = _read_labels(instance_file, chosen.spatial_dims) if instance_file else None
        table = next((p for p in outputs if p.name.endswith("_instances.json")), None)
        features = (
            read_features(table, int(instances.max()) if instances is not None and instances.size else None)
            if table
            else None
        )
        return SegmentedLayer(labels, instances, features, outputs if keep else [])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
