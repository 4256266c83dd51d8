"""A DICOM Structured Report of what a segmentation found: a TID 1500 measurement report (highdicom) with one
volumetric ROI group per segment of the SEG, referencing the SEG's segment and, through it, the source series.

Measurements per segment: volume (mL), voxel count, and mean and standard deviation of the source intensities
(CT: attenuation in HU; other modalities: the stored values after rescale, in a medunet code). The bounding box
is in the JSON report only (:func:`medunet.metrics.segment_measurements`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import medunet
from medunet.io.dicom_derived import SegmentSpec, derived_series_number, single_valued_names

__all__ = ["build_measurement_report", "sr_series_number"]

_VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
_MILLILITER = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
_MEAN = hd.sr.CodedConcept("373098007", "SCT", "Mean")
_STD = hd.sr.CodedConcept("386136009", "SCT", "Standard Deviation")
_ATTENUATION = hd.sr.CodedConcept("112031", "DCM", "Attenuation Coefficient")
_HU = hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")
_NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
# DICOM has no code for "a count of voxels" or for a modality-neutral image intensity; a private coding scheme
# (designators starting with 99 are reserved for that, PS3.16 8.2) names them.
_VOXELS = hd.sr.CodedConcept("VOXELCOUNT", "99MEDUNET", "Voxel count")
_INTENSITY = hd.sr.CodedConcept("INTENSITY", "99MEDUNET", "Image intensity")
_PROCEDURE = hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure")


def sr_series_number(source: pydicom.Dataset) -> int:
    """The source's SeriesNumber + 9100 (its SEG has + 9000), 910 without one."""
    return derived_series_number(source, 9100, 910)


def build_measurement_report(
    seg: pydicom.Dataset,
    source_images: Sequence[pydicom.Dataset],
    measurements: Sequence[Mapping[str, Any]],
    segments: Sequence[SegmentSpec],
    series_number: int | None = None,
    notes: Mapping[int, str] | None = None,
) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report of ``measurements`` (:func:`medunet.metrics.segment_measurements` records) of the
    segments of ``seg``, a SEG of ``source_images``. ``notes`` per segment number (e.g. what its RTSTRUCT contours
    leave out) go into the segment's measurement group as parameters of medunet's algorithm identification (TID
    4019), the template's place for how a result was made."""
    modality = str(source_images[0].get("Modality", "")).upper()
    intensity, unit = (_ATTENUATION, _HU) if modality == "CT" else (_INTENSITY, _NO_UNITS)
    specs = {s.number: s for s in segments}
    present = {int(item.SegmentNumber) for item in seg.SegmentSequence}
    groups = []
    for record in measurements:
        number = int(record["segment_number"])
        if number not in present:  # a SEG leaves out segments without voxels; so does the report
            continue
        values = [
            hd.sr.Measurement(name=_VOLUME, value=float(record["volume_ml"]), unit=_MILLILITER),
            hd.sr.Measurement(name=_VOXELS, value=float(record["voxel_count"]), unit=_NO_UNITS),
        ]
        if "mean_intensity" in record:
            values += [
                hd.sr.Measurement(name=intensity, value=float(record["mean_intensity"]), unit=unit, derivation=_MEAN),
                hd.sr.Measurement(name=intensity, value=float(record["std_intensity"]), unit=unit, derivation=_STD),
            ]
        spec = specs.get(number)
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"segment {number}"),
                # not ReferencedSegment.from_segmentation: it reads the segment from per-frame items, where a
                # one-segment SEG keeps it in the shared ones
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=str(seg.SOPClassUID),
                    sop_instance_uid=str(seg.SOPInstanceUID),
                    segment_number=number,
                    source_series=hd.sr.SourceSeriesForSegmentation(str(source_images[0].SeriesInstanceUID)),
                ),
                finding_type=spec.coded(spec.type) if spec else None,
                finding_category=spec.coded(spec.category) if spec else None,
                algorithm_id=(
                    hd.sr.AlgorithmIdentification("medunet", medunet.__version__, parameters=[notes[number]])
                    if notes and number in notes
                    else None
                ),
                measurements=values,
            )
        )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="medunet", model_name=f"medunet {medunet.__version__}"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=_PROCEDURE,
        imaging_measurements=groups,
    )
    # highdicom takes the patient and study from the first evidence: the first source slice, its person names
    # made single-valued for highdicom and put back unchanged afterwards (as in the SEG)
    first, names = single_valued_names(source_images[0], "SR")
    sr = hd.sr.Comprehensive3DSR(
        evidence=[first, *source_images[1:], seg],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=series_number if series_number is not None else sr_series_number(source_images[0]),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medunet",
        series_description="medunet measurements",
        is_complete=True,
    )
    for keyword, element in names.items():
        sr[keyword] = element
    return sr
