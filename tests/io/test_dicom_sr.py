"""The TID 1500 measurement report of a SEG: valid for dciodvfy, referencing the SEG's segments and the source
series, with the measured values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from medunet.data.dicom import write_dicom_series
from medunet.io import load_image
from medunet.io.dicom_derived import SegmentSpec
from medunet.io.dicom_outputs import write_dicom_outputs
from medunet.metrics import segment_measurements
from tests.io.test_dicom_seg import dciodvfy_errors


def _items(item: pydicom.Dataset) -> list[pydicom.Dataset]:
    out = []
    for child in item.get("ContentSequence", []):
        out += [child, *_items(child)]
    return out


def test_ct_report_of_two_segments_references_the_seg_and_validates(tmp_path: Path) -> None:
    volume = np.full((16, 12, 5), -100.0, np.float32)
    volume[2:6, 2:6, 1:4] = 40.0
    write_dicom_series(volume, tmp_path / "ct", spacing=(0.8, 0.8, 2.5), modality="CT")
    image = load_image(tmp_path / "ct")
    labels = np.zeros(volume.shape, np.uint8)
    labels[2:6, 2:6, 1:4] = 1
    labels[10:12, 8:10, 0:5] = 2
    segments = [SegmentSpec(1, "liver"), SegmentSpec(2, "spleen")]
    records = segment_measurements(labels, np.asarray(image.affine), np.asarray(image)[0], {1: "liver", 2: "spleen"})
    seg_path, sr_path = write_dicom_outputs(labels, image.meta, tmp_path, "ct", segments, measurements=records)
    assert (seg_path, sr_path) == (tmp_path / "ct_seg.dcm", tmp_path / "ct_sr.dcm")
    assert not dciodvfy_errors(sr_path)
    seg, sr = pydicom.dcmread(seg_path), pydicom.dcmread(sr_path)
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == seg.StudyInstanceUID == image.meta["StudyInstanceUID"]
    source_number = int(pydicom.dcmread(next((tmp_path / "ct").glob("*.dcm"))).SeriesNumber)
    assert (int(seg.SeriesNumber), int(sr.SeriesNumber)) == (source_number + 9000, source_number + 9100)
    items = _items(sr)
    referenced = [
        i for i in items if "ReferencedSOPSequence" in i and "ReferencedSegmentNumber" in i.ReferencedSOPSequence[0]
    ]
    assert [int(i.ReferencedSOPSequence[0].ReferencedSegmentNumber) for i in referenced] == [1, 2]
    assert {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in referenced} == {seg.SOPInstanceUID}

    def values(code: str) -> list[float]:
        return [float(i.MeasuredValueSequence[0].NumericValue) for i in items
                if i.get("ConceptNameCodeSequence") and i.ConceptNameCodeSequence[0].CodeValue == code
                and "MeasuredValueSequence" in i]  # fmt: skip

    voxel_ml = 0.8 * 0.8 * 2.5 / 1000
    np.testing.assert_allclose(values("118565006"), [48 * voxel_ml, 20 * voxel_ml], rtol=1e-6)  # volumes
    np.testing.assert_allclose(values("112031")[:2], [40.0, 0.0], atol=1e-3)  # liver: mean and std in HU
    hu = [i for i in items if i.get("MeasuredValueSequence")]
    assert any(i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "[hnsf'U]" for i in hu)
