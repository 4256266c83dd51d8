"""Reading and writing transforms (dictionary form) over :mod:`medunet.io`: loading images and DICOM series
(:func:`medunet.io.load_image`), writing images atomically, a DICOM SEG for predictions of DICOM input, and a
PNG overlay."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from monai.config import KeysCollection
from monai.data.image_writer import ImageWriter
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform
from monai.transforms import SaveImaged as MonaiSaveImaged
from monai.utils import convert_to_numpy, ensure_tuple

from medunet.io.image import IMAGE_SUFFIXES, NIFTI_SUFFIXES, load_image
from medunet.utils.enums import SegType, look_up
from medunet.utils.files import atomic_write_path
from medunet.utils.overlay import busiest_slice, overlay_png
from medunet.utils.values import as_bool

if TYPE_CHECKING:
    from medunet.io.dicom_derived import SegmentSpec

__all__ = [
    "LoadImageOrSeriesd",
    "SaveDicomSegd",
    "SaveImaged",
    "SaveInstanceMeasurementsd",
    "SaveMeasurementsd",
    "SaveOverlayd",
    "atomic_writer",
    "case_name",
]

logger = logging.getLogger(__name__)


class LoadImageOrSeriesd(MapTransform):
    """Loads NIfTI files, 2D images or DICOM series folders (one per key) channel-first with metadata.

    ``load_kwargs`` go to :func:`medunet.io.load_image` (``series_uid``, ``description``, ``axcodes``,
    ``spacing``, ``dtype``, ``frame``, ``stack``, ``channels``, ...). Keys listed in ``label_keys`` keep their stored
    integer type and are resampled with nearest-neighbour interpolation; ``label_series`` (a study's mask series,
    with ``channels``) applies to them only, so that image and label of one study folder load on one grid.

    With ``check_geometry`` (the default) every loaded key must have the first key's spatial shape and
    affine (within ``geometry_tolerance`` in the affine's unit, mm for medical images): an image and a label
    of another grid - shifted, mirrored, resampled - would otherwise be paired voxel by voxel without a word.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_keys: KeysCollection = (),
        allow_missing_keys: bool = False,
        check_geometry: bool = True,
        geometry_tolerance: float = 1e-3,
        **load_kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_keys = set(ensure_tuple(label_keys))
        self.check_geometry, self.geometry_tolerance = check_geometry, geometry_tolerance
        self.load_kwargs = load_kwargs

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        loaded = []
        for key in self.key_iterator(d):
            kwargs = dict(self.load_kwargs)
            label_series = kwargs.pop("label_series", None)  # a study's mask series: for the label keys only
            if key in self.label_keys:
                kwargs.setdefault("dtype", None)
                kwargs["resample_mode"] = "nearest"
                if label_series is not None:
                    kwargs["label_series"] = label_series
            d[key] = load_image(d[key], **kwargs)
            loaded.append(key)
        if self.check_geometry:
            for key in loaded[1:]:
                _same_grid(d[loaded[0]], d[key], self.geometry_tolerance)
        return d


def _same_grid(reference: Any, other: Any, tolerance: float) -> None:
    """Raises ValueError naming both files when ``other`` is not on ``reference``'s voxel grid."""
    first, second = reference.meta.get("filename_or_obj", "?"), other.meta.get("filename_or_obj", "?")
    if tuple(reference.shape[1:]) != tuple(other.shape[1:]):
        raise ValueError(
            f"{second}: spatial shape {tuple(other.shape[1:])} differs from {tuple(reference.shape[1:])} of {first}; "
            "they cannot be paired voxel by voxel. Resample one onto the other's grid (or fix the data list)."
        )
    a, b = np.asarray(reference.affine, np.float64), np.asarray(other.affine, np.float64)
    if not np.allclose(a, b, rtol=0.0, atol=tolerance):
        raise ValueError(
            f"{second}: its affine {np.round(b, 4).tolist()} differs from {np.round(a, 4).tolist()} of {first} "
            f"(beyond {tolerance:g}): shifted, mirrored or resampled. Resample one onto the other's grid, or pass "
            "check_geometry=False to LoadImageOrSeriesd if the voxels correspond anyway."
        )


def atomic_writer(writer: type[ImageWriter], ext: str) -> type[ImageWriter]:
    """``writer`` (a MONAI image writer class) writing through a temporary ``.<name>.<pid>.tmp<ext>`` and a
    rename (:func:`medunet.utils.files.atomic_write_path`): a process killed while writing leaves no file under
    the output's name. MONAI's writers write in place and take a file name, so the wrapping is done here."""

    class Atomic(writer):  # type: ignore[valid-type,misc]
        def write(self, filename: Any, verbose: bool = True, **kwargs: Any) -> None:
            atomic_write_path(filename, lambda tmp: super(Atomic, self).write(str(tmp), False, **kwargs), ext)
            if verbose:
                logging.getLogger(type(self).__name__).info("wrote %s", filename)

    Atomic.__name__ = Atomic.__qualname__ = f"Atomic{writer.__name__}"
    return Atomic


class SaveImaged(MonaiSaveImaged):
    """MONAI's ``SaveImaged`` (same arguments) whose files appear only when complete: an inference killed
    mid-case leaves no output under its final name (only a hidden temporary that the next write removes),
    so a rerun or a reader never takes a half-written file for a result."""

    def __init__(self, keys: KeysCollection, *args: Any, **kwargs: Any) -> None:
        super().__init__(keys, *args, **kwargs)
        saver = self.saver
        saver.writers = tuple(atomic_writer(w, saver.output_ext) for w in ensure_tuple(saver.writers))


class SaveDicomSegd(MapTransform):
    """Writes a DICOM SEG next to the other outputs when the prediction comes from a DICOM series.

    The prediction's metadata (copied from the input by the inferer) lists the source slices (``SourceFiles``
    and ``SOPInstanceUIDs`` in slice order, set by medunet's DICOM reader); only their headers are read, not the
    folder again. Predictions of NIfTI or 2D inputs, or of images another loader made, pass unchanged.
    Output: ``<output_dir>/<series folder name>_seg.dcm``, the measurement report ``_sr.dcm`` when
    :class:`SaveMeasurementsd` ran before, and ``_rtstruct.dcm`` with ``rtstruct``.

    Args:
        segments: :class:`~medunet.io.dicom_derived.SegmentSpec` per label value; or
        metadata: the bundle's ``metadata.json`` content, whose ``segment_codes`` give them
            (:func:`~medunet.io.dicom_derived.segments_from_metadata`).
        algorithm_name: recorded in the SEG's algorithm identification.
        rtstruct: also write ``<series folder name>_rtstruct.dcm``, the segments as RTSTRUCT contours
            (:mod:`medunet.io.rtstruct`), bounded by the three settings below; what they left out is logged and
            noted in the SR. A segmentation too fragmented for a contour set gets no RTSTRUCT, with a warning.
        contour_tolerance: contours are simplified to within this many pixels (0 to 2).
        contour_min_area: components and holes under this area (mm², per slice) are left out of the contours.
        contour_max: more contours than this is too fragmented for a contour set.
        seg_type: ``binary`` (one frame per segment and slice; the default) or ``labelmap`` (one frame per slice
            holding segment numbers: the label-map SEG, :class:`~medunet.utils.enums.SegType`).

    Raises:
        ValueError: neither ``segments`` nor ``metadata`` with ``segment_codes`` given.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        segments: Sequence[SegmentSpec] | None = None,
        metadata: Mapping[str, Any] | None = None,
        algorithm_name: str = "medunet",
        rtstruct: bool = False,
        contour_tolerance: float = 0.5,
        contour_min_area: float = 4.0,
        contour_max: int = 5000,
        seg_type: str = "binary",
        allow_missing_keys: bool = False,
    ) -> None:
        # highdicom (about 0.4 s to import) loads only when a SEG writer is made, not with medunet.transforms.
        from medunet.io.dicom_derived import segments_from_metadata

        super().__init__(keys, allow_missing_keys)
        if segments is None:
            if metadata is None:
                raise ValueError("SaveDicomSegd needs segments or the bundle metadata (with segment_codes)")
            segments = segments_from_metadata(metadata)
        self.output_dir, self.segments = output_dir, list(segments)
        self.algorithm_name = algorithm_name
        self.seg_type = look_up(seg_type, SegType, "seg_type")
        self.contour_limits = None  # no RTSTRUCT
        if as_bool(rtstruct, "rtstruct"):
            from medunet.io.rtstruct import ContourLimits

            self.contour_limits = ContourLimits(contour_tolerance, contour_min_area, contour_max)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from medunet.io.dicom_outputs import write_dicom_outputs

        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            meta = getattr(pred, "meta", {})
            if not meta.get("SourceFiles"):  # not loaded from a DICOM series (NIfTI, 2D, another loader)
                continue
            folder = Path(str(meta["SourceFiles"][0])).parent
            if not all(meta.get("SOPInstanceUIDs") or [""]):
                logger.warning(
                    "no DICOM SEG for %s: its files have no SOPInstanceUID (an anonymised export), which a SEG "
                    "must reference; the other outputs are written",
                    folder,
                )
                continue
            write_dicom_outputs(
                convert_to_numpy(pred)[0].astype(np.uint8),
                meta,
                self.output_dir,
                folder.name,
                self.segments,
                measurements=d.get(f"{key}_measurements"),
                contours=self.contour_limits,
                algorithm_name=self.algorithm_name,
                seg_type=self.seg_type,
            )
        return d


def case_name(meta: Mapping[str, Any]) -> str | None:
    """The name of a case's outputs: its file name without image suffixes, or its series folder's name; None
    when the image was not loaded from a file (e.g. handed over in memory by MONAI Deploy)."""
    source = meta.get("filename_or_obj")
    if not source:
        return None
    name = Path(str(source)).name
    for suffix in (*NIFTI_SUFFIXES, *IMAGE_SUFFIXES, ".dcm"):
        name = name.removesuffix(suffix)
    return name


class SaveOverlayd(MapTransform):
    """Writes ``<output_dir>/<name>_overlay.png``: the image with the prediction, at the slice where the
    prediction is largest (3D) - a quick visual check of an inference output. Images that were not loaded from a
    file (no ``filename_or_obj``) pass: there is no name to write under."""

    def __init__(
        self, keys: KeysCollection, image_key: str = "image", output_dir: str = ".", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.output_dir = image_key, output_dir

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred, image = d[key], d[self.image_key]
            name = case_name(getattr(pred, "meta", {}))
            if name is None:
                continue
            if pred.ndim == 4:  # 3D: show the busiest slice (a one-slice volume's middle slice is that slice)
                k = busiest_slice(pred)
                pred, image = pred[..., k : k + 1], image[..., k : k + 1]
            overlay_png(image, pred, None, Path(self.output_dir) / f"{name}_overlay.png")
        return d


class SaveMeasurementsd(MapTransform):
    """Writes ``<output_dir>/<name>_measurements.json``: per segment of the label prediction ``key`` (after
    argmax), the voxel count, volume in mL (area in mm² for 2D), mean and standard deviation of ``image_key``
    (the image as loaded, before normalisation: HU for CT) and the bounding box
    (:func:`medunet.metrics.segment_measurements`). The records are also kept under ``<key>_measurements`` for
    :class:`SaveDicomSegd`, which reports them in a DICOM SR beside the SEG.

    Args:
        metadata: the bundle's ``metadata.json`` content; its ``segment_codes`` name the segments.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        image_key: str | None = "image_source",
        metadata: Mapping[str, Any] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir, self.image_key = output_dir, image_key
        codes = (metadata or {}).get("segment_codes", {})
        self.names = {int(k): str(v.get("label", f"segment {k}")) for k, v in codes.items()}

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from medunet.metrics.measurements import segment_measurements
        from medunet.utils.files import atomic_write_json

        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            meta = dict(getattr(pred, "meta", {}))
            labels = convert_to_numpy(pred)[0].round().astype(np.int64)
            source = d.get(self.image_key) if self.image_key else None
            intensities = None if source is None else convert_to_numpy(source)[0]
            affine = np.asarray(meta.get("affine", np.eye(labels.ndim + 1)), dtype=np.float64)
            records = segment_measurements(labels, affine, intensities, self.names)
            d[f"{key}_measurements"] = records
            name = case_name(meta)
            if name is None:
                continue
            modality = str(meta.get("Modality", "") or "")
            atomic_write_json(
                Path(self.output_dir) / f"{name}_measurements.json",
                {
                    "source": str(meta.get("filename_or_obj")),
                    "series_uid": meta.get("SeriesInstanceUID"),
                    "modality": modality or None,
                    "world_space": str(meta.get("space", "RAS")),
                    "intensity_unit": "HU" if modality.upper() == "CT" else "stored values after rescale",
                    "segments": records,
                },
            )
        return d


class SaveInstanceMeasurementsd(MapTransform):
    """Writes ``<output_dir>/<name>_instances.csv`` and ``.json``: one row per instance of the instance labels
    ``keys`` (e.g. ``pred_instances``), with its area (pixels, and in mm² / mm³ where the image format carries a
    pixel size: NIfTI, DICOM), centroid, bounding box, the mean of ``image_key`` (the image as loaded, channels
    averaged) and the instance's mean object probability from ``scores_key`` (``1 -`` the background's softmax;
    :func:`medunet.metrics.instance_measurements`). Cases without instance labels are left alone.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        image_key: str | None = "image_source",
        scores_key: str | None = "pred",
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir, self.image_key, self.scores_key = output_dir, image_key, scores_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import csv
        import io
        import json

        from medunet.metrics.measurements import INSTANCE_COLUMNS, instance_measurements
        from medunet.utils.files import atomic_write_json, atomic_write_text

        d = dict(data)
        for key in self.key_iterator(d):
            scores = d.get(self.scores_key) if self.scores_key else None
            meta = dict(getattr(scores if scores is not None else d[key], "meta", {}))
            name = case_name(meta)
            if name is None:
                continue
            instances = convert_to_numpy(d[key]).astype(np.int64)
            instances = instances[0] if instances.ndim > 2 and instances.shape[0] == 1 else instances
            source = d.get(self.image_key) if self.image_key else None
            intensities = None if source is None else convert_to_numpy(source).astype(np.float64).mean(axis=0)
            channels = None if scores is None else convert_to_numpy(scores)
            probability = None if channels is None or channels.shape[0] < 2 else 1.0 - channels[0].astype(np.float64)
            spacing, unit = None, None
            if not str(meta.get("filename_or_obj", "")).lower().endswith(IMAGE_SUFFIXES):  # a format with a pixel size
                affine = np.asarray(meta.get("affine", np.eye(instances.ndim + 1)), dtype=np.float64)
                spacing = [float(v) for v in affine_to_spacing(affine, r=instances.ndim)]
                unit = "mm"
            records = instance_measurements(instances, spacing, unit, intensities, probability)
            d[f"{key}_measurements"] = records
            table = io.StringIO()
            writer = csv.writer(table)
            writer.writerow(INSTANCE_COLUMNS)
            for record in records:
                writer.writerow(
                    json.dumps(record[c]) if isinstance(record[c], list) else ("" if record[c] is None else record[c])
                    for c in INSTANCE_COLUMNS
                )
            atomic_write_text(Path(self.output_dir) / f"{name}_instances.csv", table.getvalue())
            atomic_write_json(
                Path(self.output_dir) / f"{name}_instances.json",
                {"source": str(meta.get("filename_or_obj")), "instances": records},
                indent=1,
            )
        return d
