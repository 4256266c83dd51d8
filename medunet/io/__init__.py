"""Reading and writing files and talking to a PACS: NIfTI, 2D images, DICOM series, a study's series as one
multi-channel image (``dicom_study``), DICOM SEG (``dicom_seg``),
the PACS client (``pacs``). The ground floor of medunet: nothing here imports another medunet package but utils."""

from medunet.io.dicom_series import (
    DicomSeriesError,
    DicomSeriesInfo,
    DicomSeriesReader,
    DicomVolume,
    read_dicom_header,
    read_dicom_series,
    scan_dicom_folder,
    select_series,
)
from medunet.io.dicom_study import DicomStudyReader, StudyChannels, read_study_channels
from medunet.io.image import load_image, reader_for

__all__ = [
    "DicomSeriesError",
    "DicomSeriesInfo",
    "DicomSeriesReader",
    "DicomStudyReader",
    "DicomVolume",
    "StudyChannels",
    "load_image",
    "read_dicom_header",
    "read_dicom_series",
    "read_study_channels",
    "reader_for",
    "scan_dicom_folder",
    "select_series",
]
