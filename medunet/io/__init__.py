"""Reading images: NIfTI, 2D images and DICOM series."""

from medunet.io.dicom_series import (
    DicomSeriesError,
    DicomSeriesInfo,
    DicomSeriesReader,
    DicomVolume,
    read_dicom_series,
    scan_dicom_folder,
    select_series,
)
from medunet.io.image import load_image, reader_for

__all__ = [
    "DicomSeriesError",
    "DicomSeriesInfo",
    "DicomSeriesReader",
    "DicomVolume",
    "load_image",
    "read_dicom_series",
    "reader_for",
    "scan_dicom_folder",
    "select_series",
]
