"""DICOM uploads are de-identified (PS3.15 Basic Profile) before they are stored or classified."""

import io

import pydicom
import pytest

IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "OtherPatientIDs",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "ContentDate",
    "InstanceCreationDate",
    "StationName",
    "DeviceSerialNumber",
    "StudyID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "InstanceCreatorUID",
)


@pytest.fixture(scope="module")
def chest_dicom(data_dir) -> bytes:
    return (data_dir / "dicom" / "RG1_UNCR.dcm").read_bytes()


def stored_object(database, s3_server, result_id: str) -> bytes:
    key = database.execute(
        "SELECT i.object_key FROM results r JOIN images i ON i.id = r.image_id WHERE r.id = %s", (result_id,)
    ).fetchone()[0]
    database.commit()
    return s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()


def all_values(dataset) -> str:
    """Every element's value (recursing into sequences), and the file meta, as one text."""
    texts = [repr(element.value) for element in dataset.file_meta]
    for element in dataset.iterall():
        if element.keyword != "PixelData":
            texts.append(repr(element.value))
    return "\n".join(texts)


def test_dicom_is_de_identified_before_it_is_stored(admin_client, chest_dicom, database, s3_server):
    original = pydicom.dcmread(io.BytesIO(chest_dicom))
    response = admin_client.post(
        "/classify",
        files={"file": ("RG1_UNCR.dcm", chest_dicom, "application/dicom")},
        data={"accession_number": "ORDER-000123", "external_id": "ris:job-42"},
    )

    assert response.status_code == 201, response.text
    result = response.json()
    assert result["label"] in ("normal", "pneumonia")
    image = result["image"]
    assert (image["content_type"], image["modality"], image["body_part"], image["view_position"]) == (
        "application/dicom",
        "CR",
        "CHEST",
        "PA",
    )
    # the accession number is kept only as a keyed digest: never answered, found by its value
    assert (result["accession_number"], result["external_id"]) == (None, "ris:job-42")
    found = admin_client.get("/results", params={"accession_number": "ORDER-000123"}).json()["items"]
    assert [item["id"] for item in found] == [result["id"]]

    stored = pydicom.dcmread(io.BytesIO(stored_object(database, s3_server, result["id"])))
    text = all_values(stored)
    for keyword in IDENTIFYING:
        value = str(original[keyword].value)
        assert value and value not in text, f"{keyword} survived de-identification"
    assert original.file_meta.SourceApplicationEntityTitle not in text
    assert stored.PatientIdentityRemoved == "YES" and stored.PatientName == "" and stored.PatientID == ""
    assert not any(element.tag.is_private for element in stored.iterall())
    assert stored.file_meta.MediaStorageSOPInstanceUID == stored.SOPInstanceUID != original.SOPInstanceUID
    assert (stored.Modality, stored.BodyPartExamined, stored.ViewPosition) == ("CR", "CHEST", "PA")
    assert stored.PixelData == original.PixelData and stored.PhotometricInterpretation == "MONOCHROME1"
    assert image["size_bytes"] == len(stored_object(database, s3_server, result["id"]))


def test_uids_are_replaced_consistently(admin_client, chest_dicom, database, s3_server):
    uids = []
    for _ in range(2):
        result = admin_client.post("/classify", files={"file": ("a.dcm", chest_dicom)}).json()
        stored = pydicom.dcmread(io.BytesIO(stored_object(database, s3_server, result["id"])))
        uids.append((stored.StudyInstanceUID, stored.SeriesInstanceUID, stored.SOPInstanceUID))
    assert uids[0] == uids[1]  # the same original always maps to the same replacement


def test_dicom_without_pixel_data_is_refused_and_nothing_is_stored(admin_client, chest_dicom, database, s3_server):
    dataset = pydicom.dcmread(io.BytesIO(chest_dicom))
    del dataset.PixelData
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    rows = database.execute("SELECT count(*) FROM results").fetchone()[0]
    database.commit()
    objects = len(s3_server.keys())

    response = admin_client.post("/classify", files={"file": ("empty.dcm", buffer.getvalue())})

    assert response.status_code == 422 and response.json()["code"] == "dicom_without_pixel_data"
    assert response.json()["type"] == "https://cxr.example/problems/dicom-without-pixel-data"
    assert database.execute("SELECT count(*) FROM results").fetchone()[0] == rows
    assert len(s3_server.keys()) == objects


def test_the_stored_dicom_is_served_back(admin_client, chest_dicom):
    result = admin_client.post("/classify", files={"file": ("a.dcm", chest_dicom)}).json()
    served = admin_client.get(result["image"]["url"])
    assert served.status_code == 200 and served.headers["content-type"] == "application/dicom"
    assert pydicom.dcmread(io.BytesIO(served.content)).PatientIdentityRemoved == "YES"
