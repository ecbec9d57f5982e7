"""A result as a DICOM Structured Report, after the IHE AI Results (AIR) profile, for a PACS to show.

The report is a TID 1500 measurement report (Comprehensive 3D SR) holding one measurement group: the
finding as a coded qualitative evaluation (SNOMED CT where a label has a code, else the model's own
label in the private scheme 99CXR), the calibrated probability and the decision threshold as
measurements, the unusual-image flag, the model's name and version (algorithm identification, TID
4019), and a reference to the source image (study, series and instance). Its patient and study
attributes are copied from the evidence it is built on: the hospital's own header, held only for the
request that answers the report (`dicom.source_references`), or the stored de-identified file.
The result is decision support, never verified by a person, so the report is complete but unverified.
"""

from __future__ import annotations

import io

from highdicom.sr import (
    AlgorithmIdentification,
    CodedConcept,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from pydicom import Dataset, dcmread, dcmwrite
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from cxr_model.answer import Classification
from cxr_model.images import DICOM, media_type_of
from gateway import __version__, dicom
from gateway.exceptions import NotAcceptable
from gateway.models import Result

MEDIA_TYPE = DICOM
MANUFACTURER = "cxr-gateway"
PRIVATE_SCHEME = "99CXR"  # the model's own labels, where SNOMED CT has no code for them
SERIES_NUMBER = 9901  # AI results apart from the acquired series

_SNOMED_FINDINGS = {
    "normal": ("17621005", "Normal"),
    "pneumonia": ("233604007", "Pneumonia"),
    "covid": ("840539006", "Disease caused by severe acute respiratory syndrome coronavirus 2"),
    "mild": ("255604002", "Mild"),
    "moderate": ("6736007", "Moderate"),
    "severe": ("24484000", "Severe"),
}
_PRESENT = CodedConcept("52101004", "SCT", "Present")
_ABSENT = CodedConcept("2667000", "SCT", "Absent")
_YES = CodedConcept("373066001", "SCT", "Yes")
_NO = CodedConcept("373067005", "SCT", "No")
_UNITLESS = CodedConcept("1", "UCUM", "no units")
_PROBABILITY = CodedConcept("probability", PRIVATE_SCHEME, "Calibrated probability")
_THRESHOLD = CodedConcept("threshold", PRIVATE_SCHEME, "Decision threshold")
_UNUSUAL_IMAGE = CodedConcept("unusual_image", PRIVATE_SCHEME, "Image unlike the model's training images")
_PROCEDURES = {
    "CT": CodedConcept("77477000", "SCT", "Computed tomography"),
    "default": CodedConcept("363680008", "SCT", "Radiographic imaging procedure"),
}


def finding_code(answer: Classification, label: str) -> CodedConcept:
    """The label's SNOMED CT code, or the model's label in the private scheme."""
    value, meaning = _SNOMED_FINDINGS.get(label, (label, answer.describe(label).name))
    return CodedConcept(value, "SCT" if label in _SNOMED_FINDINGS else PRIVATE_SCHEME, meaning)


def source_of(upload: bytes) -> Dataset:
    """The hospital's own header of an upload whose SR is asked for (`NotAcceptable` when it is not DICOM)."""
    if media_type_of(upload) != DICOM:
        raise NotAcceptable("sr_needs_dicom", "a DICOM Structured Report can only be made of a DICOM image")
    return dicom.source_references(upload)


def evidence_of(stored_dicom: bytes) -> Dataset:
    """The stored (de-identified) file's header, as the evidence of its de-identified report."""
    return dcmread(io.BytesIO(stored_dicom), stop_before_pixels=True)


def report(result: Result, evidence: Dataset) -> bytes:
    """The result's SR (a Part 10 file), filed in the study of `evidence`, whose image it references.

    Its UIDs derive from the result and the evidence's instance, so asking again gives the same document."""
    answer = result.classification
    algorithm = AlgorithmIdentification(
        name=answer.model_name, version=answer.model_version, parameters=_parameters(answer)
    )
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=_uid(result, evidence, "finding"), identifier="AI finding"),
        finding_type=finding_code(answer, answer.positive_class or answer.label),
        algorithm_id=algorithm,
        qualitative_evaluations=_evaluations(answer),
        measurements=_measurements(answer, algorithm),
        source_images=[SourceImageForMeasurementGroup.from_source_image(evidence)],
    )
    device = DeviceObserverIdentifyingAttributes(
        uid=_uid(result, evidence, "device"), name=answer.model_name, manufacturer_name=MANUFACTURER,
        model_name=f"{answer.model_name} {answer.model_version}",
    )  # fmt: skip
    content = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=ObserverContext(codes.DCM.Device, device)),
        procedure_reported=_PROCEDURES.get(str(evidence.get("Modality", "")), _PROCEDURES["default"]),
        imaging_measurements=[group],
    )
    document = Comprehensive3DSR(
        evidence=[evidence],
        content=content,
        series_instance_uid=_uid(result, evidence, "series"),
        series_number=SERIES_NUMBER,
        sop_instance_uid=_uid(result, evidence, "instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        software_versions=__version__,
        series_description="AI result (decision support)",
        is_complete=True,
        content_date=result.created_at.date(),
        content_time=result.created_at.time(),
    )
    buffer = io.BytesIO()
    dcmwrite(buffer, document, enforce_file_format=True)
    return buffer.getvalue()


def _parameters(answer: Classification) -> list[str]:
    parameters = [f"threshold={answer.threshold}"] if answer.threshold is not None else []
    if answer.calibration:
        parameters.append(f"calibration={answer.calibration.method} T={answer.calibration.temperature}")
    return parameters


def _evaluations(answer: Classification) -> list[QualitativeEvaluation]:
    """The finding: present or absent for a binary model with a positive class, else the decided class;
    and whether the image is unlike the training images (for models with that check)."""
    if answer.positive_class:
        present = _PRESENT if answer.label == answer.positive_class else _ABSENT
        evaluations = [QualitativeEvaluation(finding_code(answer, answer.positive_class), present)]
    else:
        evaluations = [QualitativeEvaluation(codes.DCM.Finding, finding_code(answer, answer.label))]
    if answer.ood:
        evaluations.append(QualitativeEvaluation(_UNUSUAL_IMAGE, _YES if answer.ood.flagged else _NO))
    return evaluations


def _measurements(answer: Classification, algorithm: AlgorithmIdentification) -> list[Measurement]:
    """The calibrated probability of the finding, and the threshold it was decided on (binary models)."""
    label = answer.positive_class or answer.label
    probability = round(answer.probabilities.get(label, 0.0), 6)
    measurements = [Measurement(name=_PROBABILITY, value=probability, unit=_UNITLESS, algorithm_id=algorithm)]
    if answer.threshold is not None:
        measurements.append(Measurement(name=_THRESHOLD, value=answer.threshold, unit=_UNITLESS))
    return measurements


def _uid(result: Result, evidence: Dataset, role: str) -> str:
    return str(generate_uid(entropy_srcs=[str(result.id), str(evidence.SOPInstanceUID), role]))
