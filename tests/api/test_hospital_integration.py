"""Hospital integration against the real gateway: DICOM SR and FHIR answers, STOW-RS intake with a standard
DICOMweb client, results found by the hospital's own references, and the OpenAPI schema."""

import io
import shutil
import subprocess
import uuid

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from support import bearer_client, client_credentials_token, new_api_client


@pytest.fixture(scope="module")
def chest_dicom(data_dir) -> bytes:
    return (data_dir / "dicom" / "RG1_UNCR.dcm").read_bytes()


@pytest.fixture(scope="module")
def original(chest_dicom) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(chest_dicom), stop_before_pixels=True)


def assert_valid_sr(data: bytes, tmp_path) -> pydicom.Dataset:
    """The SR passes dciodvfy (Debian's dicom3tools) without an error, or highdicom's reader where it is absent."""
    path = tmp_path / f"{uuid.uuid4().hex}.dcm"
    path.write_bytes(data)
    if shutil.which("dciodvfy"):
        checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        report = checked.stdout + checked.stderr
        assert "Comprehensive3DSR" in report and "Error" not in report, report
    else:
        import highdicom

        highdicom.sr.srread(path)
    return pydicom.dcmread(path)


def content_items(dataset: pydicom.Dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from content_items(item)


def meanings(dataset: pydicom.Dataset) -> dict[str, object]:
    """Each content item's concept name, with its value (code meaning, number or text)."""
    found = {}
    for item in content_items(dataset):
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if "ConceptCodeSequence" in item:
            found[name] = item.ConceptCodeSequence[0].CodeMeaning
        elif "MeasuredValueSequence" in item:
            found[name] = float(item.MeasuredValueSequence[0].NumericValue)
        elif "TextValue" in item:
            found[name] = item.TextValue
    return found


def test_classify_answers_an_sr_in_the_hospitals_study_and_stores_only_the_deidentified(
    service_client, chest_dicom, original, tmp_path
):
    answered = service_client.post(
        "/classify",
        files={"file": ("chest.dcm", chest_dicom)},
        data={"external_id": "ris-42"},
        headers={"Accept": "application/dicom"},
    )

    assert answered.status_code == 201, answered.text
    assert answered.headers["content-type"] == "application/dicom"
    report = assert_valid_sr(answered.content, tmp_path)
    assert report.Modality == "SR" and report.CompletionFlag == "COMPLETE" and report.VerificationFlag == "UNVERIFIED"
    assert (report.PatientID, report.PatientName) == (original.PatientID, original.PatientName)
    assert (report.StudyInstanceUID, report.AccessionNumber) == (original.StudyInstanceUID, original.AccessionNumber)
    evidence = report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == original.SeriesInstanceUID
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    result = service_client.get(answered.headers["location"]).json()
    found = meanings(report)
    assert found["Algorithm Name"] == result["model_name"] and found["Algorithm Version"] == result["model_version"]
    probability = result["probabilities"][result["positive_class"]]
    assert found["Calibrated probability"] == pytest.approx(probability, abs=1e-6)
    assert found["Decision threshold"] == pytest.approx(result["threshold"])
    assert found["Pneumonia"] == ("Present" if result["label"] == "pneumonia" else "Absent")
    assert found["Image unlike the model's training images"] == ("Yes" if result["ood"]["flagged"] else "No")

    stored = service_client.get(f"/results/{result['id']}/sr")
    assert stored.status_code == 200, stored.text
    deidentified = assert_valid_sr(stored.content, tmp_path)
    assert deidentified.StudyInstanceUID != original.StudyInstanceUID
    assert str(deidentified.PatientName) == "" and deidentified.PatientID == "" and deidentified.AccessionNumber == ""
    referenced = deidentified.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    stored_image = pydicom.dcmread(io.BytesIO(service_client.get(f"/results/{result['id']}/image").content))
    assert referenced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == stored_image.SOPInstanceUID
    assert meanings(deidentified)["Calibrated probability"] == found["Calibrated probability"]
    assert original.StudyInstanceUID.encode() not in stored.content


def test_an_sr_of_a_jpeg_is_not_acceptable_and_nothing_is_stored(service_client, sample_xrays):
    jpeg = sample_xrays["normal"][0].read_bytes()
    before = service_client.get("/results").json()["total"]

    refused = service_client.post("/classify", files={"file": ("x.jpg", jpeg)}, headers={"Accept": "application/dicom"})

    assert refused.status_code == 406 and refused.json()["code"] == "sr_needs_dicom", refused.text
    assert service_client.get("/results").json()["total"] == before
    stored = service_client.post("/classify", files={"file": ("x.jpg", jpeg)}).json()
    missing = service_client.get(f"/results/{stored['id']}/sr")
    assert missing.status_code == 404 and missing.json()["code"] == "sr_not_available"


def test_fhir_answer_is_a_valid_r4_diagnostic_report(service_client, chest_dicom):
    result = service_client.post("/classify", files={"file": ("chest.dcm", chest_dicom)}).json()

    answered = service_client.get(f"/results/{result['id']}/fhir")

    assert answered.status_code == 200 and answered.headers["content-type"] == "application/fhir+json"
    report = DiagnosticReport.model_validate(answered.json())  # raises on any structural error
    contained = {resource.id: resource for resource in report.contained}
    observation, device, media = contained["finding"], contained["device"], contained["image"]
    assert report.status == "preliminary" and report.result[0].reference == "#finding"
    assert observation.code.coding[0].system == "http://snomed.info/sct" and observation.code.text == "Pneumonia"
    positive = result["label"] == result["positive_class"]
    assert observation.interpretation[0].coding[0].code == ("POS" if positive else "NEG")
    assert observation.method.text == f"{result['model_name']} version {result['model_version']}"
    assert device.deviceName[0].name == result["model_name"] and device.version[0].value == result["model_version"]
    components = {component.code.coding[0].code: component for component in observation.component}
    assert float(components["probability"].valueQuantity.value) == pytest.approx(result["probabilities"]["pneumonia"])
    assert components["unusual_image"].valueBoolean is result["ood"]["flagged"]
    assert media.content.url == f"/results/{result['id']}/image" and media.content.contentType == "application/dicom"
    assert report.imagingStudy[0].identifier.value.startswith("urn:oid:")


def test_results_are_found_by_the_hospitals_references_and_unknown_parameters_are_refused(
    service_client, admin_client, chest_dicom, original
):
    accession, external_id = f"ACC{uuid.uuid4().hex[:8]}", f"ext-{uuid.uuid4().hex[:8]}"
    form = {"accession_number": accession, "external_id": external_id}
    result = service_client.post("/classify", files={"file": ("chest.dcm", chest_dicom)}, data=form).json()

    for name, value in (("accession_number", accession), ("external_id", external_id)):
        page = service_client.get("/results", params={name: value}).json()
        assert [item["id"] for item in page["items"]] == [result["id"]], name
    by_instance = service_client.get("/results", params={"sop_instance_uid": original.SOPInstanceUID}).json()
    assert result["id"] in [item["id"] for item in by_instance["items"]]
    assert service_client.get("/results", params={"accession_number": "ACC-other"}).json()["total"] == 0

    typos = ((service_client, "/results"), (admin_client, "/results/export.csv"), (admin_client, "/audit"))
    for client, path in typos:
        refused = client.get(path, params={"acession_number": accession})
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "unknown_query_parameter" and "acession_number" in refused.json()["detail"]
    exported = admin_client.get("/results/export.csv", params={"external_id": external_id})
    assert exported.status_code == 200 and exported.headers["x-total-count"] == "1"


def test_stow_rs_from_a_dicomweb_client_classifies_each_instance_once(
    gateway, admin_client, chest_dicom, original, data_dir
):
    api_client = new_api_client(admin_client)
    token = client_credentials_token(gateway.url, api_client["client_id"], api_client["client_secret"])
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    dicomweb = DICOMwebClient(f"{gateway.url}/dicomweb", session=session)
    chest = pydicom.dcmread(io.BytesIO(chest_dicom))
    ct_slice = pydicom.dcmread(data_dir / "dicom" / "CT_small.dcm")

    answer = dicomweb.store_instances([chest, ct_slice])  # the CT slice: no deployed model reads CT

    stored, failed = answer.ReferencedSOPSequence, answer.FailedSOPSequence
    assert [item.ReferencedSOPInstanceUID for item in stored] == [original.SOPInstanceUID]
    assert [item.ReferencedSOPInstanceUID for item in failed] == [ct_slice.SOPInstanceUID]
    assert failed[0].FailureReason == 0x0122
    result_url = stored[0].RetrieveURL
    with bearer_client(gateway.url, token) as client:
        result = client.get(result_url).json()
        assert result["image"]["modality"] == "CR" and result["label"] in {"normal", "pneumonia"}

        again = dicomweb.store_instances([chest])  # the same instance again: its first result

        assert again.ReferencedSOPSequence[0].RetrieveURL == result_url and "FailedSOPSequence" not in again
        found = client.get("/results", params={"sop_instance_uid": original.SOPInstanceUID}).json()
        assert [item["id"] for item in found["items"]] == [result["id"]]
    refused = requests.post(
        f"{gateway.url}/dicomweb/studies",
        data=b"--b\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--b--\r\n",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=b',
        },
        timeout=30,
    )
    assert refused.status_code == 409 and refused.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert requests.post(f"{gateway.url}/dicomweb/studies", data=b"", timeout=30).status_code == 401


def test_openapi_declares_both_oauth2_flows_and_is_for_signed_in_callers_in_production(gateway, admin_client):
    assert requests.get(f"{gateway.url}/docs/", timeout=30).status_code == 404  # production: no pages
    assert requests.get(f"{gateway.url}/openapi.json", timeout=30).status_code == 401

    schema = admin_client.get("/openapi.json").json()

    flows = schema["components"]["securitySchemes"]["OAuth2"]["flows"]
    assert flows["password"]["tokenUrl"] == flows["clientCredentials"]["tokenUrl"] == "auth/token"
    for path in ("/dicomweb/studies", "/results/{result_id}/sr", "/results/{result_id}/fhir"):
        assert path in schema["paths"], path
    listed = {parameter["name"] for parameter in schema["paths"]["/results"]["get"]["parameters"]}
    assert {"accession_number", "external_id", "sop_instance_uid", "limit", "sort"} <= listed
