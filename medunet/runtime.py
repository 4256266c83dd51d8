"""Exact overlap-tile inference without torch: an exported model (``medunet export --onnx``) on ONNX Runtime.

The artefact is one zip file: ``model.onnx`` (the network, with its spatial axes dynamic over the valid input
sizes) and ``pipeline.json`` (the network's geometry, the input tile, border extension, flip test-time
augmentation, the intensity preset, the classes and the instance post-processing). :class:`Pipeline` runs it
with what hospitals' and edge machines' small Python environments have: numpy, onnxruntime, scipy and
scikit-image (Pillow for PNG/TIFF; nibabel for NIfTI and zarr for zarr volumes where installed).

The tiles are the torch inferer's (:func:`medunet.inference.plan_tiles`: the same sizes on the pooling grid, the
same mirror extension by :func:`medunet.utils.regions.extract_region`, the same flips averaged the same way), so
the logits equal :class:`medunet.inference.OverlapTileInferer`'s up to float32 rounding, and the instance
labels come from the same :func:`medunet.transforms.functional.instances.instances_from_prediction`. None of the
modules this one imports loads torch (``tests/test_runtime.py`` runs it in a virtual environment without torch).

Usage::

    from medunet.runtime import Pipeline
    pipeline = Pipeline.load("nuclei.zip")
    result = pipeline.segment(image)  # image: (C, *S) or (*S) array, as the bundle reads it
    result["labels"], result["instances"]

or ``python -m medunet.runtime nuclei.zip INPUT OUTPUT_DIR`` for a file, a folder of files or a zarr volume.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medunet.inference.tiling import TilePlan, flip_subsets, placement, plan_tiles
from medunet.networks.geometry import UNetGeometry
from medunet.transforms.functional.instances import instances_from_prediction
from medunet.utils.enums import IntensityPreset, OutputMode, look_up
from medunet.utils.regions import extract_region

__all__ = ["FORMAT_VERSION", "Pipeline", "apply_intensity_preset", "main"]

FORMAT_VERSION = 1
"""The version of ``pipeline.json`` this runtime reads (written by :func:`medunet.export.export_onnx`)."""

_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".nii", ".nii.gz")


def apply_intensity_preset(image: np.ndarray, preset: str | None, params: dict[str, Any] | None = None) -> np.ndarray:
    """The bundles' intensity presets (:func:`medunet.transforms.intensity_preset`) on a channel-first numpy array.

    Written here because the presets' MONAI transforms import torch, which this runtime must not need; the
    arithmetic is theirs (``tests/test_runtime.py`` compares the two): ``ct`` maps the window ``level +- width/2``
    to 0..1 and clips; ``mr`` clips each channel to its ``lower``/``upper`` percentiles (linear interpolation) and
    scales it to zero mean and unit standard deviation (over non-zero voxels with ``nonzero``; population
    standard deviation); ``microscopy`` scales each channel's min..max to 0..1. None: the image as float32.
    """
    x = np.asarray(image, dtype=np.float32)
    if preset is None:
        return x
    params = params or {}
    kind = look_up(preset, IntensityPreset, "intensity_preset")
    if kind == IntensityPreset.CT:
        level, width = float(params.get("level", 40.0)), float(params.get("width", 400.0))
        low, high = level - width / 2, level + width / 2
        return np.clip((x - low) / (high - low), 0.0, 1.0).astype(np.float32)
    out = np.empty_like(x)
    for c in range(x.shape[0]):
        channel = x[c]
        if kind == IntensityPreset.MR:
            lower, upper = np.percentile(channel, [params.get("lower", 0.5), params.get("upper", 99.5)])
            channel = np.clip(channel, lower, upper)
            mask = channel != 0 if params.get("nonzero", False) else np.ones(channel.shape, dtype=bool)
            values = channel[mask]
            if values.size == 0:
                out[c] = channel
                continue
            mean, std = float(values.mean()), float(values.std())
            scaled = channel.copy()
            scaled[mask] = (values - mean) / (std if std != 0 else 1.0)
            out[c] = scaled
        else:
            low, high = float(channel.min()), float(channel.max())
            out[c] = (channel - low) / (high - low) if high > low else channel * 0.0
    return out


@dataclass
class Pipeline:
    """An exported model and its pipeline settings, ready to run.

    Attributes:
        session: the ONNX Runtime session of ``model.onnx``.
        geometry: the network's size arithmetic.
        settings: ``pipeline.json`` (see :func:`medunet.export.export_onnx` for its keys).
    """

    session: Any
    geometry: UNetGeometry
    settings: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None) -> Pipeline:
        """Reads an artefact of ``medunet export --onnx``.

        Args:
            path: the zip file.
            threads: ONNX Runtime's intra-op threads (default: its own choice, all cores).
            providers: ONNX Runtime execution providers (default: the CPU's).

        Raises:
            FileNotFoundError, ValueError: no such file, not such an artefact, or a newer format.
        """
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such exported model (write one with `medunet export --onnx`)")
        try:
            with zipfile.ZipFile(path) as archive:
                settings = json.loads(archive.read("pipeline.json"))
                model = archive.read("model.onnx")
        except (zipfile.BadZipFile, KeyError) as err:
            raise ValueError(
                f"{path}: not an artefact of `medunet export --onnx` (a zip with model.onnx and pipeline.json): {err}"
            ) from None
        version = settings.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path}: pipeline.json has format_version {version!r}; this runtime reads {FORMAT_VERSION} "
                "(export it again with this medunet, or update medunet)"
            )
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        session = onnxruntime.InferenceSession(
            model, sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
        )
        g = settings["geometry"]
        geometry = UNetGeometry(
            tuple(tuple(p) for p in g["pool_sizes"]), g["spatial_dims"], g["kernel_size"], g["convs_per_level"]
        )
        return cls(session, geometry, settings)

    @property
    def spatial_dims(self) -> int:
        return self.geometry.spatial_dims

    def plan(self, image_shape: Sequence[int]) -> TilePlan:
        """The tile plan for an image of spatial shape ``image_shape`` (the exported input tile, clamped to the
        image as the torch inferer clamps it)."""
        return plan_tiles(self.geometry, image_shape, input_tile=self.settings["input_tile"])

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The network's input from an image as the bundle reads it: a channel axis added to ``(*S)``, RGB(A)
        made one luminance channel (ITU-R BT.601) for one-channel networks, the intensity preset applied."""
        x = np.asarray(image)
        if x.ndim == self.spatial_dims:
            x = x[None]
        if x.ndim != self.spatial_dims + 1:
            raise ValueError(
                f"image of shape {x.shape}: the model takes {self.spatial_dims}D images, (*S) or channel-first (C, *S)"
            )
        in_channels = self.settings["in_channels"]
        if in_channels == 1 and x.shape[0] in (3, 4):
            weights = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(3, *([1] * self.spatial_dims))
            x = (x[:3].astype(np.float32) * weights).sum(0, keepdims=True)
        if x.shape[0] != in_channels:
            raise ValueError(f"image has {x.shape[0]} channel(s); the model takes in_channels={in_channels}")
        return apply_intensity_preset(x, self.settings.get("intensity_preset"), self.settings.get("intensity_params"))

    def _run_tiles(self, image: np.ndarray, plan: TilePlan, probabilities: bool) -> np.ndarray:
        out: np.ndarray | None = None
        mode = self.settings["padding_mode"]
        for start in plan.tile_starts():
            tile = extract_region(image, [s - m for s, m in zip(start, plan.margin)], plan.input_tile, mode)
            (pred,) = self.session.run(None, {"image": np.ascontiguousarray(tile[None], dtype=np.float32)})
            pred = pred[0]
            if probabilities:
                pred = _softmax(pred)
            if out is None:
                out = np.empty((pred.shape[0], *plan.image_shape), dtype=np.float32)
            dst, src = placement(start, plan.output_tile, (0,) * len(start), plan.image_shape)
            out[(slice(None), *dst)] = pred[(slice(None), *src)]
        assert out is not None
        return out

    def predict(self, image: np.ndarray, output: str | OutputMode | None = None) -> np.ndarray:
        """Logits or probabilities ``(classes, *S)`` float32 of a prepared image ``(C, *S)`` (see :meth:`prepare`),
        averaged over the exported flips as :class:`~medunet.inference.OverlapTileInferer` averages them."""
        kind = look_up(output or self.settings["output"], OutputMode, "output")
        image = np.asarray(image, dtype=np.float32)
        plan = self.plan(image.shape[1:])
        flips = self.settings["flip_axes"]
        subsets = flip_subsets(flips)
        result: np.ndarray | None = None
        for flip in subsets:
            axes = tuple(a + 1 for a in flip)
            source = np.flip(image, axes) if flip else image
            pred = self._run_tiles(source, plan, kind == OutputMode.PROBABILITIES)
            pred = np.flip(pred, axes) if flip else pred
            result = pred.copy() if result is None else np.add(result, pred, out=result)
        assert result is not None
        if len(subsets) > 1:
            result /= len(subsets)
        return result

    def logits(self, image: np.ndarray) -> np.ndarray:
        """:meth:`predict` of the logits."""
        return self.predict(image, OutputMode.LOGITS)

    def segment(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The bundle's inference on an image as read (see :meth:`prepare`): ``scores`` (the exported output,
        probabilities or logits), ``labels`` (argmax, uint8) and, where the bundle writes them, ``instances``
        (uint16 / int32 instance labels by the exported post-processing)."""
        scores = self.predict(self.prepare(image))
        result = {"scores": scores, "labels": np.argmax(scores, axis=0).astype(np.uint8)}
        instances = self.settings.get("instances")
        if instances is not None:
            result["instances"] = instances_from_prediction(scores, **instances)
        return result


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=0, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=0, keepdims=True)


def _read(path: Path) -> tuple[np.ndarray, Any]:
    """An image file as the bundles read it (2D files with the first axis along the image's width, MONAI's
    convention), and what writing the result back needs."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel

        volume: Any = nibabel.load(str(path))
        return np.asarray(volume.dataobj), volume.affine
    from PIL import Image

    with Image.open(path) as img:
        array = np.asarray(img)
    if array.ndim == 3:  # (H, W, C) -> (C, W, H)
        return np.transpose(array, (2, 1, 0)), None
    return array.T, None


def _write(labels: np.ndarray, path: Path, meta: Any) -> Path:
    if meta is not None:
        import nibabel

        out = path.with_name(path.name + ".nii.gz")
        nibabel.save(nibabel.Nifti1Image(labels, meta), str(out))
        return out
    from PIL import Image

    out = path.with_name(path.name + ".png")
    Image.fromarray(np.ascontiguousarray(labels.T)).save(out)
    return out


def run_path(pipeline: Pipeline, source: Path, output_dir: Path) -> list[Path]:
    """Segments a file, every image file of a folder, or a zarr volume (``.zarr``, channel-first or not) into
    ``output_dir``: ``<name>_seg`` labels (PNG for 2D files, 0 / 255 for two classes as the bundles write them;
    NIfTI with the input's affine; zarr) and, where the model has instance settings, ``<name>_instances``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if source.suffix == ".zarr":
        import zarr

        array = np.asarray(zarr.open_array(str(source), mode="r"))
        result = pipeline.segment(array)
        for key in ("labels", "instances"):
            if key in result:
                target = output_dir / f"{source.stem}_{'seg' if key == 'labels' else key}.zarr"
                labels: Any = result[key]
                zarr.save_array(str(target), labels)
                written.append(target)
        return written
    files = (
        sorted(p for p in source.iterdir() if p.name.lower().endswith(_IMAGE_SUFFIXES)) if source.is_dir() else [source]
    )
    if not files:
        raise ValueError(f"{source}: no image files ({', '.join(_IMAGE_SUFFIXES)})")
    for path in files:
        image, meta = _read(path)
        result = pipeline.segment(image)
        stem = path.name.split(".")[0]
        labels = result["labels"]
        if meta is None and pipeline.settings["num_classes"] == 2:
            labels = labels * np.uint8(255)  # two classes in a PNG: 0 / 255, visible, as the bundles write them
        written.append(_write(labels, output_dir / f"{stem}_seg", meta))
        if "instances" in result:
            instances = result["instances"].astype(np.uint16 if meta is None else np.int32)
            written.append(_write(instances, output_dir / f"{stem}_instances", meta))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medunet.runtime", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the zip written by `medunet export --onnx`")
    parser.add_argument("input", type=Path, help="an image file, a folder of image files, or a .zarr volume")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime's intra-op threads")
    args = parser.parse_args(argv)
    try:
        pipeline = Pipeline.load(args.model, threads=args.threads)
        if not args.input.exists():
            raise FileNotFoundError(f"{args.input}: no such file or folder")
        for path in run_path(pipeline, args.input, args.output_dir):
            print(path)
    except (FileNotFoundError, ValueError) as err:
        print(f"medunet runtime: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
