"""A result as FHIR R4 resources, for an EHR: a DiagnosticReport with its Observation contained.

The Observation carries the finding (coded as in the DICOM SR: SNOMED CT where a label has a code),
its interpretation (binary models), the model as method and device, and as components the
calibrated probability, the decision threshold and the unusual-image flag. The image is the
contained Media (the gateway's URL of the stored image) and, for DICOM, the de-identified study
as an ImagingStudy reference by its Study Instance UID. The caller's `external_id` is an identifier; the
accession number is not (the gateway keeps only its keyed digest). Statuses are `preliminary`: no person has
verified the answer, which is decision support and not a diagnosis.
"""

from __future__ import annotations

from typing import Any

from cxr_model.answer import Classification
from gateway.models import Result, as_utc
from gateway.structured_report import finding_code

MEDIA_TYPE = "application/fhir+json"
SNOMED = "http://snomed.info/sct"
LABELS = "https://cxr.example/fhir/CodeSystem/model-labels"  # a model's own labels, where SNOMED CT has none
RESULT_FIELDS = "https://cxr.example/fhir/CodeSystem/result-fields"
EXTERNAL_ID = "https://cxr.example/fhir/NamingSystem/external-id"
_UCUM = "http://unitsofmeasure.org"
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_PRESENT = {"system": SNOMED, "code": "52101004", "display": "Present"}
_ABSENT = {"system": SNOMED, "code": "2667000", "display": "Absent"}


def diagnostic_report(result: Result) -> dict[str, Any]:
    """The result as one DiagnosticReport resource (JSON) with the Observation, Device and Media contained."""
    answer, when = result.classification, as_utc(result.created_at).isoformat()
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": str(result.id),
        "contained": [_device(answer), _media(result), _observation(answer, when)],
        "identifier": _identifiers(result),
        "status": "preliminary",
        "category": [_coded("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")],
        "code": _coded("http://loinc.org", "18748-4", "Diagnostic imaging study"),
        "effectiveDateTime": when,
        "issued": when,
        "result": [{"reference": "#finding"}],
        "media": [{"comment": "the image classified", "link": {"reference": "#image"}}],
        "conclusion": _conclusion(answer),
        "conclusionCode": [_label_concept(answer, answer.label)],
    }
    if result.image.study_instance_uid:
        study = {"system": "urn:dicom:uid", "value": f"urn:oid:{result.image.study_instance_uid}"}
        report["imagingStudy"] = [{"type": "ImagingStudy", "identifier": study}]
    return report


def _observation(answer: Classification, when: str) -> dict[str, Any]:
    finding = answer.positive_class or answer.label
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "finding",
        "status": "preliminary",
        "category": [_coded("http://terminology.hl7.org/CodeSystem/observation-category", "imaging", "Imaging")],
        "code": _label_concept(answer, finding),
        "effectiveDateTime": when,
        "method": {"text": f"{answer.model_name} version {answer.model_version}"},
        "device": {"reference": "#device"},
        "derivedFrom": [{"reference": "#image"}],
        "component": _components(answer, finding),
    }
    if answer.positive_class:
        present = answer.label == answer.positive_class
        observation["valueCodeableConcept"] = {"coding": [_PRESENT if present else _ABSENT]}
        interpretation = ("POS", "Positive") if present else ("NEG", "Negative")
        observation["interpretation"] = [_coded(_INTERPRETATION, *interpretation)]
    else:
        observation["valueCodeableConcept"] = _label_concept(answer, answer.label)
    return observation


def _components(answer: Classification, finding: str) -> list[dict[str, Any]]:
    probability = round(answer.probabilities.get(finding, 0.0), 6)
    components = [_component("probability", "Calibrated probability", {"valueQuantity": _unitless(probability)})]
    if answer.threshold is not None:
        components.append(_component("threshold", "Decision threshold", {"valueQuantity": _unitless(answer.threshold)}))
    if answer.ood:
        meaning = "Image unlike the model's training images"
        components.append(_component("unusual_image", meaning, {"valueBoolean": answer.ood.flagged}))
    return components


def _component(code: str, meaning: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"code": _coded(RESULT_FIELDS, code, meaning), **value}


def _unitless(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "1", "system": _UCUM, "code": "1"}


def _device(answer: Classification) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": "device",
        "deviceName": [{"name": answer.model_name, "type": "model-name"}],
        "version": [{"value": answer.model_version}],
    }


def _media(result: Result) -> dict[str, Any]:
    image = result.image
    media: dict[str, Any] = {
        "resourceType": "Media",
        "id": "image",
        "status": "completed",
        "content": {"contentType": image.content_type, "url": f"/results/{result.id}/image"},
    }
    return media | {name: value for name in ("width", "height") if (value := getattr(image, name))}


def _identifiers(result: Result) -> list[dict[str, Any]]:
    identifiers: list[dict[str, Any]] = [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{result.id}"}]
    if result.external_id:
        identifiers.append({"system": EXTERNAL_ID, "value": result.external_id})
    return identifiers


def _label_concept(answer: Classification, label: str) -> dict[str, Any]:
    code = finding_code(answer, label)
    system = SNOMED if code.scheme_designator == "SCT" else LABELS
    return {"coding": [{"system": system, "code": code.value, "display": code.meaning}], "text": code.meaning}


def _coded(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _conclusion(answer: Classification) -> str:
    described = answer.describe(answer.label)
    probability = answer.probabilities.get(answer.label, 0.0)
    return f"{described.finding} (probability {probability:.2f}); decision support, not a diagnosis"
