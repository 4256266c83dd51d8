"""``load_image``: one entry point for NIfTI files, 2D images and DICOM series folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import ImageReader, MetaTensor, NibabelReader, PILReader
from monai.transforms import EnsureChannelFirst, Orientation, Spacing

from medunet.io.dicom_series import DicomSeriesReader
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
) -> ImageReader:
    """The MONAI reader for ``path``: DICOM series folder / ``.dcm`` file, NIfTI, or a 2D image."""
    p = Path(path)
    name = p.name.lower()
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
) -> MetaTensor:
    """Loads an image channel-first with its affine and source metadata.

    Args:
        path: a NIfTI file, a PNG/TIFF/JPEG image (RGB(A) becomes channels), or a folder holding a DICOM
            series (or one ``.dcm`` file of it).
        series_uid / modality / description: select one series from a folder holding several.
        on_irregular: ``"error"`` or ``"warn"`` for unevenly spaced DICOM slices.
        axcodes: reorient to these axis codes, e.g. ``"RAS"`` (3D only).
        spacing: resample to this voxel spacing (mm), e.g. ``(1.0, 1.0, 2.0)``.
        resample_mode: interpolation for ``spacing``: ``"bilinear"`` for images, ``"nearest"`` for labels.
        dtype: output data type (``None`` keeps the stored one).
        allow_nan: NaN voxels raise ``ValueError`` unless this is true.

    Returns:
        ``MetaTensor`` of shape ``(C, *spatial)``; 2D images follow MONAI's convention (first spatial axis
        = image width), DICOM volumes are ``(1, columns, rows, slices)`` with a RAS affine.

    Raises:
        FileNotFoundError: ``path`` does not exist. ``ValueError``: unsupported type, NaN voxels, or (as
        :class:`~medunet.io.dicom_series.DicomSeriesError`) a DICOM problem naming the file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist; give a NIfTI/PNG/TIFF file or a DICOM series folder")
    reader = reader_for(p, series_uid, modality, description, on_irregular)
    # The reader is called directly rather than through monai.transforms.LoadImage: on a reader error
    # LoadImage falls back to every other registered reader and buries the actual message.
    data, meta = reader.get_data(reader.read(str(p)))
    if dtype is not None:
        data = np.asarray(data, dtype=dtype)
    meta["filename_or_obj"] = str(p)
    image = EnsureChannelFirst()(MetaTensor.ensure_torch_and_prune_meta(data, meta))
    if torch.is_floating_point(image) and not allow_nan and bool(torch.isnan(image).any()):
        count = int(torch.isnan(image).sum())
        raise ValueError(f"{p}: {count} NaN voxels; clean the image or pass allow_nan=True to load it as is")
    if axcodes is not None:
        image = Orientation(axcodes=axcodes, labels=None)(image)
    if spacing is not None:
        image = Spacing(pixdim=tuple(spacing), mode=resample_mode)(image)
    return image  # type: ignore[return-value]
