"""``load_image``: one entry point for NIfTI files, 2D images and DICOM series folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import ImageReader, MetaTensor, NibabelReader, PILReader
from monai.transforms import EnsureChannelFirst, Orientation, Spacing

from medunet.io.checks import MAX_IMAGE_BYTES_ENV, check_declared_size, check_image, max_image_bytes, read_error
from medunet.io.dicom_series import DicomSeriesReader
from medunet.io.dicom_study import DicomStudyReader
from medunet.io.volumes import TIFF_SUFFIXES, VolumeReader, is_volume_path
from medunet.utils.enums import IrregularSpacing

__all__ = ["IMAGE_SUFFIXES", "NIFTI_SUFFIXES", "load_image", "reader_for"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def reader_for(
    path: str | Path,
    series_uid: str | None = None,
    modality: str | None = None,
    description: str | None = None,
    on_irregular: str | IrregularSpacing = IrregularSpacing.ERROR,
    channels: Sequence[str] | None = None,
    label_series: str | None = None,
) -> ImageReader:
    """The MONAI reader for ``path``: DICOM series folder / ``.dcm`` file, a DICOM study folder read as channels
    (``channels``, see :class:`~medunet.io.dicom_study.DicomStudyReader`), NIfTI, or a 2D image."""
    p = Path(path)
    name = p.name.lower()
    if channels or label_series is not None:
        if not channels:
            raise ValueError(
                f"label_series={label_series!r} needs channels (the SeriesDescription patterns whose first series "
                "gives the grid the mask is resampled into)"
            )
        if not p.is_dir():
            raise ValueError(
                f"{p}: channels (SeriesDescription patterns) choose series of a DICOM study folder; give the folder "
                "that holds the study's series, not a file"
            )
        return DicomStudyReader(channels, label=label_series)
    if is_volume_path(p) or (name.endswith(TIFF_SUFFIXES) and _is_bigtiff(p)):
        return VolumeReader()
    if p.is_dir() or name.endswith(".dcm"):
        return DicomSeriesReader(series_uid, modality, description, on_irregular)
    if name.endswith(NIFTI_SUFFIXES):
        return NibabelReader()
    if name.endswith(IMAGE_SUFFIXES):
        return PILReader()
    raise ValueError(
        f"{p}: unsupported file type; medunet reads NIfTI ({', '.join(NIFTI_SUFFIXES)}), 2D images "
        f"({', '.join(IMAGE_SUFFIXES)}) and DICOM series (a folder, or one .dcm file of the series)"
    )


def _is_bigtiff(path: Path) -> bool:
    """A BigTIFF (Pillow reads classic TIFF only): the header's version field is 43."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head in (b"II+\x00", b"MM\x00+")


def load_image(
    path: str | Path,
    series_uid: str | None = None,
    modality: str | None = None,
    description: str | None = None,
    on_irregular: str | IrregularSpacing = IrregularSpacing.ERROR,
    axcodes: str | None = None,
    spacing: Sequence[float] | None = None,
    dtype: np.dtype | type | None = np.float32,
    allow_nan: bool = False,
    resample_mode: str = "bilinear",
    frame: int | None = None,
    stack: bool = False,
    max_bytes: int | None = None,
    channels: Sequence[str] | None = None,
    label_series: str | None = None,
) -> MetaTensor:
    """Loads an image channel-first with its affine and source metadata.

    Args:
        path: a NIfTI file, a PNG/TIFF/JPEG image (RGB(A) becomes channels), a folder holding a DICOM
            series (or one ``.dcm`` file of it), a zarr array / OME-Zarr image (``.zarr`` folder) or a BigTIFF
            (read with :class:`~medunet.io.volumes.VolumeReader`: axes reversed to ``(x, y, z)``, voxel size and
            origin in the affine).
        series_uid / modality / description: select one series from a folder holding several.
        on_irregular: ``"error"`` or ``"warn"`` for unevenly spaced DICOM slices.
        axcodes: reorient to these axis codes, e.g. ``"RAS"`` (3D only).
        spacing: resample to this voxel spacing (mm), e.g. ``(1.0, 1.0, 2.0)``.
        resample_mode: interpolation for ``spacing``: ``"bilinear"`` for images, ``"nearest"`` for labels.
        dtype: output data type (``None`` keeps the stored one).
        allow_nan: NaN or infinite voxels raise ``ValueError`` unless this is true.
        frame: the time point (or vector component) of a 4D NIfTI to load; a 4D NIfTI with more than one
            raises ``ValueError`` without it (its volumes are not channels of one image).
        stack: load a multi-page TIFF as a volume ``(1, x, y, page)``; without it a multi-page file raises
            ``ValueError`` (only its first page would be read).
        max_bytes: the most bytes a header may declare (default ``$MEDUNET_MAX_IMAGE_BYTES`` or 16 GiB).
        channels: for a DICOM study folder: SeriesDescription patterns (regular expressions), one series per
            channel, resampled onto the first one's grid (:func:`medunet.io.read_study_channels`).
        label_series: with ``channels``: load this mask series (0/1) on the first channel's grid instead.

    Returns:
        ``MetaTensor`` of shape ``(C, *spatial)``; 2D images follow MONAI's convention (first spatial axis
        = image width), DICOM volumes are ``(1, columns, rows, slices)`` with a RAS affine.

    Raises:
        FileNotFoundError: ``path`` does not exist. ``ValueError``: unsupported type; a header declaring more
        than the file holds (checked before anything is allocated, see :mod:`medunet.io.checks`); a truncated
        or corrupt file; an empty image; NaN or infinite voxels; a singular affine or non-positive spacing; a
        4D NIfTI without ``frame``; a multi-page image without ``stack``; or (as
        :class:`~medunet.io.dicom_series.DicomSeriesError`) a DICOM problem naming the file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist; give a NIfTI/PNG/TIFF file or a DICOM series folder")
    reader = reader_for(p, series_uid, modality, description, on_irregular, channels, label_series)
    if isinstance(reader, VolumeReader):
        reader.max_bytes = max_bytes
    name = p.name.lower()
    kind = "nifti" if name.endswith(NIFTI_SUFFIXES) else "image" if name.endswith(IMAGE_SUFFIXES) else None
    if isinstance(reader, VolumeReader):
        kind = "volume"
    if kind == "image" and stack:
        data, meta = _read_pages(p, max_bytes)
    else:
        if kind in ("nifti", "image"):
            check_declared_size(p, kind, max_bytes)
        # The reader is called directly rather than through monai.transforms.LoadImage: on a reader error
        # LoadImage falls back to every other registered reader and buries the actual message.
        try:
            data, meta = reader.get_data(reader.read(str(p)))
        except (OSError, EOFError, ValueError, RuntimeError) as err:
            if kind in (None, "volume"):  # DICOM and zarr: medunet's own readers name the path and the problem
                raise
            raise read_error(p, "NIfTI" if kind == "nifti" else "an image", err) from None
        if kind == "nifti":
            data, meta = _one_volume(np.asarray(data), meta, p, frame)
    if dtype is not None:
        data = np.asarray(data, dtype=dtype)
    meta["filename_or_obj"] = str(p)
    image = EnsureChannelFirst()(MetaTensor.ensure_torch_and_prune_meta(data, meta))
    check_image(image, image.affine, p, allow_nan)  # type: ignore[attr-defined]
    if axcodes is not None:
        image = Orientation(axcodes=axcodes, labels=None)(image)
    if spacing is not None:
        image = Spacing(pixdim=tuple(spacing), mode=resample_mode)(image)
    return image  # type: ignore[return-value]


def _one_volume(data: np.ndarray, meta: dict, path: Path, frame: int | None) -> tuple[np.ndarray, dict]:
    """A 3D volume from a NIfTI: 4D files (x, y, z, t) need ``frame`` unless they hold a single time point."""
    if data.ndim <= 3:
        return data, meta
    if data.ndim > 4:
        raise ValueError(
            f"{path}: a {data.ndim}D NIfTI (shape {data.shape}); medunet reads 2D, 3D and 4D (x, y, z, t) NIfTI. "
            "Split it into 3D volumes first."
        )
    count = data.shape[-1]
    if frame is None and count > 1:
        raise ValueError(
            f"{path}: a 4D NIfTI with {count} time points / components (shape {data.shape}); they are not channels "
            f"of one image. Pass frame=K (0..{count - 1}) to load_image or LoadImageOrSeriesd (inference bundles: "
            "--preprocessing#transforms#0#frame K) to segment one of them."
        )
    index = 0 if frame is None else frame
    if not -count <= index < count:
        raise ValueError(f"{path}: frame={frame} is out of range; the 4D NIfTI has {count} (0..{count - 1})")
    meta = dict(meta)
    meta["original_channel_dim"] = float("nan")  # MONAI's "no channel axis"
    return np.ascontiguousarray(data[..., index]), meta


def _read_pages(path: Path, max_bytes: int | None) -> tuple[np.ndarray, dict]:
    """A multi-page TIFF as a volume ``(x, y, page)`` with an identity affine (Pillow reads the pages; MONAI's
    PILReader reads only the first)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height, pages = im.size[0], im.size[1], int(getattr(im, "n_frames", 1))
            declared, limit = width * height * pages * 4, max_bytes or max_image_bytes()  # float32 once loaded
            if declared > limit:
                raise ValueError(
                    f"{path}: {pages} pages of {width}x{height} pixels would need {declared} bytes, more than the "
                    f"limit of {limit}; raise it with ${MAX_IMAGE_BYTES_ENV} (bytes) if the stack is genuine."
                )
            planes = []
            for i in range(pages):
                im.seek(i)
                plane = np.asarray(im)
                if plane.ndim != 2:
                    raise ValueError(f"{path}: page {i} has {plane.shape[-1]} channels; stack=True reads grey pages")
                planes.append(plane.T)
    except ValueError:
        raise
    except Exception as err:
        raise read_error(path, "a multi-page image", err) from None
    data = np.stack(planes, axis=-1)
    meta = {"affine": np.eye(4), "original_affine": np.eye(4), "spatial_shape": np.asarray(data.shape),
            "original_channel_dim": float("nan")}  # fmt: skip
    return data, meta
