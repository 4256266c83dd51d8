"""Writing a volume as a DICOM series with correct geometry (generated data for the bundles and the tests)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from medunet.utils.enums import Modality, look_up

__all__ = ["write_dicom_series"]


def write_dicom_series(
    volume: np.ndarray,
    folder: str | Path,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: np.ndarray | None = None,
    modality: str | Modality = Modality.CT,
    rescale: tuple[float, float] = (1.0, -1024.0),
    series_description: str = "medunet synthetic",
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    patient_id: str = "MEDUNET-SYNTH-001",
    instance_numbers: Sequence[int] | None = None,
    file_names: Sequence[str] | None = None,
) -> list[Path]:
    """Writes an ``(x, y, z)`` volume as one single-frame DICOM file per slice.

    Args:
        volume: values in physical units (e.g. HU); stored as ``(value - intercept) / slope`` in uint16/int16.
        folder: created if missing; existing files of the same names are replaced.
        spacing: (column spacing, row spacing, slice step) in mm.
        origin: patient position (LPS, mm) of voxel (0, 0, 0).
        direction: 3x3 matrix whose columns are the x, y and slice directions (LPS); identity by default.
        modality: ``"CT"`` or ``"MR"``.
        rescale: (slope, intercept) written to every slice.
        instance_numbers: InstanceNumber per slice (default 1..n); lets tests shuffle them.
        file_names: file name per slice (default ``slice_0000.dcm`` ...).

    Returns:
        The written paths, in slice order.
    """
    if volume.ndim != 3:
        raise ValueError(f"volume must be (x, y, z), got shape {volume.shape}")
    modality = look_up(modality, Modality, "modality").value
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    slope, intercept = rescale
    stored = np.round((volume.astype(np.float64) - intercept) / slope)
    signed = stored.min() < 0
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    if stored.min() < info.min or stored.max() > info.max:
        raise ValueError(f"values do not fit {dtype.__name__} with rescale {rescale}; choose another slope/intercept")
    stored = stored.astype(dtype)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    now = _dt.datetime(2020, 1, 1, 12, 0, 0)
    n = volume.shape[2]
    numbers = list(instance_numbers) if instance_numbers is not None else list(range(1, n + 1))
    names = list(file_names) if file_names is not None else [f"slice_{k:04d}.dcm" for k in range(n)]
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = out / names[k]
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.SeriesDescription = series_description
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.StudyID = "1"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.Manufacturer = "medunet"
        ds.SeriesNumber = 1
        ds.AcquisitionNumber = 1
        ds.PatientPosition = "HFS"
        ds.BodyPartExamined = "ABDOMEN" if modality == "CT" else "BRAIN"
        ds.InstanceNumber = int(numbers[k])
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        position = np.asarray(origin, dtype=np.float64) + direction[:, 2] * spacing[2] * k
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing, column spacing
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.PositionReferenceIndicator = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[0])
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        if modality == "CT":
            ds.RescaleType = "HU"
            ds.KVP = "120"
        else:
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "3D"
            ds.EchoTime = "2.5"
            ds.RepetitionTime = "8"
            ds.EchoTrainLength = 1
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
