"""The intended-use gate through the real gateway and inference service (with the committed image-kind
model and the two X-ray models, pediatric and adult), Postgres and the S3 server: every image gets its
intended answer, from the model made for the patient's age (no age known: the adult model).

A matrix over real DICOM files (pydicom's bundled test files and the pydicom-data package) of every
transfer syntax among them and several modalities (CR, MR, US, CT, NM, OT), header-less files (JPEG,
PNG, DICOMs whose tags are missing), and a chest radiograph re-encoded in the transfer syntaxes
pydicom writes. Each answer is: classified (201, with the image kind, warnings and age band), warned
(201 with a population mismatch) or refused (422 with its code, `found` and `accepted`, nothing
stored, the refusal audited)."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)
from support import MODEL_REPOSITORY, blank_png, dicom_file, latest_model_version, png_image, stored_counts

from cxr_model.card import ModelCard

BUNDLED = Path(pydicom.__file__).parent / "data" / "test_files"
XRAY = "pneumonia-xray"  # children aged 1 to 5
ADULT_XRAY = "pneumonia-xray-adult"  # adults; answers too when no age is known


def pydicom_data() -> Path:
    import data_store  # the pydicom-data package

    return Path(data_store.__file__).parent / "data"


def real_file(name: str) -> bytes:
    for folder in (BUNDLED, pydicom_data()):
        if (folder / name).exists():
            return (folder / name).read_bytes()
    raise FileNotFoundError(name)


@dataclass(frozen=True)
class Expected:
    status: int
    code: str | None = None  # the refusal's code
    found: str | None = None  # what the refusal says the image is (None: not checked)
    warning: str | None = None  # the result's warning
    age_band: str | None = None
    model: str = ADULT_XRAY  # the model that answers (201)


CLASSIFIED = Expected(201)  # no age known: the adult model
ADULT = Expected(201, age_band="18-64")  # born 1940, studied 2004: the adult model
ADULT_WARNED = Expected(201, warning="population_mismatch", age_band="18-64", model=XRAY)  # named the pediatric one
CHILD = Expected(201, age_band="1-5", model=XRAY)


def refused(code: str, found: str | None = None) -> Expected:
    return Expected(422, code, found)


# real files as scanners and archives wrote them: (file, what it is, its intended answer)
REAL_DICOM = [
    ("RG1_UNCR.dcm", "CR chest PA, MONOCHROME1, Explicit VR LE", ADULT),
    ("RG1_UNCI.dcm", "the same, lossy history", ADULT),
    ("RG1_J2KR.dcm", "the same, JPEG 2000 lossless", ADULT),
    ("RG1_J2KI.dcm", "the same, JPEG 2000 lossy", ADULT),
    ("RG3_UNCR.dcm", "CR extremity (hand), Explicit VR LE", refused("unsupported_body_part", "EXTREMITY")),
    ("RG3_J2KR.dcm", "CR extremity, JPEG 2000 lossless", refused("unsupported_body_part", "EXTREMITY")),
    ("RG3_J2KI.dcm", "CR extremity, JPEG 2000 lossy", refused("unsupported_body_part", "EXTREMITY")),
    ("MR_small.dcm", "MR, Explicit VR LE", refused("unsupported_modality", "MR")),
    ("MR_small_implicit.dcm", "MR, Implicit VR LE", refused("unsupported_modality", "MR")),
    ("MR_small_bigendian.dcm", "MR, Explicit VR BE", refused("unsupported_modality", "MR")),
    ("MR_small_RLE.dcm", "MR, RLE lossless", refused("unsupported_modality", "MR")),
    ("MR_small_jp2klossless.dcm", "MR, JPEG 2000 lossless", refused("unsupported_modality", "MR")),
    ("MR_small_jpeg_ls_lossless.dcm", "MR, JPEG-LS lossless", refused("unsupported_modality", "MR")),
    ("emri_small_jpeg_2k_lossless.dcm", "MR head, JPEG 2000 lossless", refused("unsupported_modality", "MR")),
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", "abdominal MR", refused("unsupported_modality", "MR")),
    ("MR2_J2KI.dcm", "MR, JPEG 2000 lossy", refused("unsupported_modality", "MR")),
    ("US1_UNCR.dcm", "ultrasound, RGB, Explicit VR LE", refused("unsupported_modality", "US")),
    ("US1_J2KR.dcm", "ultrasound, JPEG 2000 lossless", refused("unsupported_modality", "US")),
    ("OBXXXX1A_rle.dcm", "obstetric ultrasound, palette colour, RLE", refused("unsupported_modality", "US")),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "ultrasound, JPEG lossless P14", refused("unsupported_modality", "US")),
    ("examples_ybr_color.dcm", "ultrasound, JPEG baseline", refused("unsupported_modality", "US")),
    # CT passes the header check (covid-ct reads CT); the image-kind model sees neither slice as a chest CT
    ("CT_small.dcm", "CT slice, not of the chest", refused("unsupported_image_kind", "other")),
    ("693_J2KR.dcm", "CT slice, JPEG 2000 lossless, not of the chest", refused("unsupported_image_kind", "other")),
    ("JPEG-LL.dcm", "nuclear medicine, JPEG lossless", refused("unsupported_modality", "NM")),
    ("JPEG-lossy.dcm", "nuclear medicine, JPEG extended", refused("unsupported_modality", "NM")),
    ("image_dfl.dcm", "secondary capture, deflated", refused("unsupported_modality", "OT")),
    ("SC_rgb_jpeg_dcmtk.dcm", "secondary capture, YBR, JPEG baseline", refused("unsupported_modality", "OT")),
    # without Modality: the other header facts still decide
    (
        "JPEGLSNearLossless_08.dcm",
        "no tags, 10 x 45 pixels, JPEG-LS near-lossless",
        refused("image_too_small", "10x45"),
    ),
    (
        "SC_jpeg_no_color_transform.dcm",
        "no tags, RGB, JPEG baseline",
        refused("unsupported_photometric_interpretation", "RGB"),
    ),
    (
        "GDCMJ2K_TextGBR.dcm",
        "no tags, YBR_RCT, JPEG 2000 lossless",
        refused("unsupported_photometric_interpretation", "YBR_RCT"),
    ),
]


def edited(name: str, **attributes) -> bytes:
    """A real file with some attributes changed (None deletes one)."""
    return dicom_file(pydicom.dcmread(io.BytesIO(real_file(name))), **attributes)


NO_TAGS = {"Modality": None, "BodyPartExamined": None, "ViewPosition": None}
EDITED_DICOM = [
    ("RG1 lateral", lambda: edited("RG1_UNCR.dcm", ViewPosition="LL"), refused("unsupported_view", "LL")),
    (
        "RG1 localizer",
        lambda: edited("RG1_UNCR.dcm", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]),
        refused("unsupported_image_type", "ORIGINAL\\PRIMARY\\LOCALIZER"),
    ),
    ("RG1 a child of 4", lambda: edited("RG1_UNCR.dcm", PatientAge="004Y"), CHILD),
    ("RG1 an adult of 30", lambda: edited("RG1_UNCR.dcm", PatientAge="030Y"), ADULT),
    ("RG1 without an age", lambda: edited("RG1_UNCR.dcm", PatientAge=None, PatientBirthDate=None), CLASSIFIED),
    ("RG1 without its tags", lambda: edited("RG1_UNCR.dcm", **NO_TAGS), ADULT),  # the kind model decides
    ("MR2 without its tags", lambda: edited("MR2_UNCR.dcm", **NO_TAGS), refused("unsupported_image_kind", "other")),
    # a CT slice that is not of the chest (by the image-kind model): no model is made for it
    ("CT without its tags", lambda: edited("693_UNCR.dcm", **NO_TAGS), refused("unsupported_image_kind")),
]


def chest_radiograph_in(transfer_syntax) -> bytes:
    """RG1 (a CR chest PA of an adult) at a third of its size, re-encoded in `transfer_syntax`."""
    dataset = pydicom.dcmread(io.BytesIO(real_file("RG1_UNCR.dcm")))
    pixels = np.ascontiguousarray(dataset.pixel_array[::3, ::3])
    dataset.Rows, dataset.Columns = pixels.shape
    buffer = io.BytesIO()
    if transfer_syntax in (RLELossless, JPEG2000Lossless):
        dataset.compress(transfer_syntax, pixels)
    elif transfer_syntax == ExplicitVRBigEndian:  # pydicom writes pixel bytes as they are: swapped here
        dataset.PixelData = pixels.byteswap().tobytes()
        dataset.file_meta.TransferSyntaxUID = transfer_syntax
        dcmwrite(buffer, dataset, implicit_vr=False, little_endian=False, force_encoding=True)
        return buffer.getvalue()
    else:
        dataset.PixelData = pixels.tobytes()
        dataset.file_meta.TransferSyntaxUID = transfer_syntax
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


RE_ENCODED = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEG2000Lossless,
]


def send(client, data: bytes, name: str = "upload", **form):
    request_id = uuid.uuid4().hex
    response = client.post("/classify", files={"file": (name, data)}, data=form, headers={"X-Request-ID": request_id})
    return response, request_id


def audit_event(admin_client, request_id: str) -> dict:
    events = admin_client.get("/audit", params={"action": "result.classify", "limit": 50}).json()["items"]
    [event] = [event for event in events if event["request_id"] == request_id]
    return event


def check(admin_client, database, s3_server, data: bytes, expected: Expected, name: str = "upload", **form) -> dict:
    """Sends one image and checks its answer, what was stored and the audit event; returns the body."""
    before = stored_counts(database, s3_server)
    response, request_id = send(admin_client, data, name, **form)
    body = response.json()
    assert response.status_code == expected.status, body
    event = audit_event(admin_client, request_id)
    if expected.status == 201:
        assert stored_counts(database, s3_server) == tuple(count + 1 for count in before)
        assert (body["model_name"], body["model_version"]) == (expected.model, latest_model_version(expected.model))
        assert body["image_kind"]["label"] == "chest_xray" and body["image_kind"]["model"].startswith("image-kind/")
        assert [warning["code"] for warning in body["warnings"]] == ([expected.warning] if expected.warning else [])
        assert body["age_band"] == expected.age_band
        assert (event["outcome"], event["target"]) == ("success", f"result:{body['id']}")
        assert admin_client.get(f"/results/{body['id']}").json()["warnings"] == body["warnings"]
        return body
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["code"] == expected.code and body["refusals"][0]["code"] == expected.code
    assert body["type"] == "https://cxr.example/problems/" + expected.code.replace("_", "-")
    assert body["found"] == (expected.found or body["found"]) and body["detail"] == body["refusals"][0]["detail"]
    if expected.code != "unsupported_image_kind" or body["model"]:
        assert body["accepted"] or expected.code == "unsupported_image_type"
    assert stored_counts(database, s3_server) == before  # nothing stored
    assert (event["outcome"], event["detail"]) == ("failure", expected.code)
    return body


@pytest.mark.parametrize(("name", "what", "expected"), REAL_DICOM, ids=[case[0] for case in REAL_DICOM])
def test_real_dicom_files_get_their_intended_answer(admin_client, database, s3_server, name, what, expected):
    check(admin_client, database, s3_server, real_file(name), expected, name)


@pytest.mark.parametrize(("case", "make", "expected"), EDITED_DICOM, ids=[case[0] for case in EDITED_DICOM])
def test_edited_real_dicom_files_get_their_intended_answer(admin_client, database, s3_server, case, make, expected):
    check(admin_client, database, s3_server, make(), expected)


@pytest.mark.parametrize("transfer_syntax", RE_ENCODED, ids=[uid.name for uid in RE_ENCODED])
def test_a_chest_radiograph_in_each_transfer_syntax_is_classified(admin_client, database, s3_server, transfer_syntax):
    data = chest_radiograph_in(transfer_syntax)
    assert pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID == transfer_syntax
    check(admin_client, database, s3_server, data, ADULT)


def test_header_less_images_are_classified_or_refused_by_their_kind(
    admin_client, database, s3_server, data_dir, sample_xrays
):
    xray = check(admin_client, database, s3_server, sample_xrays["normal"][0].read_bytes(), CLASSIFIED, "x.jpg")
    assert xray["image_kind"]["name"] == "Chest X-ray" and xray["image_kind"]["probability"] > 0.5
    hand = sorted((data_dir / "other-images" / "mednist" / "Hand").glob("*.jpeg"))[0]
    refusal = check(admin_client, database, s3_server, hand.read_bytes(), refused("unsupported_image_kind", "other"))
    assert refusal["image_kind"]["label"] == "other" and refusal["accepted"] == ["chest_ct", "chest_xray"]
    assert "no deployed model is made for it" in refusal["detail"]
    check(admin_client, database, s3_server, blank_png(), refused("unsupported_image_kind", "other"))
    ct_slice = sorted((data_dir / "sars-cov-2-ct" / "covid").glob("*"))[0]  # classified by the CT model
    ct, _ = send(admin_client, ct_slice.read_bytes(), "ct.jpg")
    assert ct.status_code == 201 and (ct.json()["model_name"], ct.json()["image_kind"]["name"]) == (
        "covid-ct",
        "Chest CT slice",
    )


def test_a_small_chest_xray_is_refused_as_too_small(admin_client, database, s3_server, sample_xrays):
    from PIL import Image

    small = Image.open(sample_xrays["normal"][0]).convert("L").resize((100, 100))
    body = check(admin_client, database, s3_server, png_image(np.asarray(small)), refused("image_too_small", "100x100"))
    assert body["accepted"] == [">= 128"] and body["model"] == ADULT_XRAY  # no age: the adult model's refusal


def test_a_named_model_must_be_made_for_the_image(admin_client, database, s3_server):
    before = stored_counts(database, s3_server)
    mr, _ = send(admin_client, real_file("MR_small.dcm"), model=XRAY)
    assert mr.status_code == 422 and mr.json()["code"] == "unsupported_modality" and mr.json()["model"] == XRAY
    assert mr.json()["accepted"] == ["CR", "DX", "DR"] and mr.json()["input_kind"]
    kind_model, _ = send(admin_client, real_file("RG1_UNCR.dcm"), model="image-kind")
    assert kind_model.status_code == 422 and kind_model.json()["code"] == "no_intended_use"
    unknown, _ = send(admin_client, real_file("RG1_UNCR.dcm"), model="no-such-model")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_model"
    assert stored_counts(database, s3_server) == before
    check(admin_client, database, s3_server, real_file("RG1_J2KR.dcm"), ADULT_WARNED, model=XRAY)


def test_the_age_is_never_stored_only_its_band(admin_client, database, s3_server):
    original = pydicom.dcmread(io.BytesIO(real_file("RG1_UNCR.dcm")), stop_before_pixels=True)
    body = check(admin_client, database, s3_server, real_file("RG1_UNCR.dcm"), ADULT_WARNED, model=XRAY)

    row = database.execute(
        "SELECT r.age_band, r.warnings::text, r.image_kind::text, r.classification::text, i.object_key"
        " FROM results r JOIN images i ON i.id = r.image_id WHERE r.id = %s",
        (body["id"],),
    ).fetchone()
    database.commit()
    band, warnings, kind, classification, key = row
    assert band == "18-64" and "population_mismatch" in warnings
    stored = pydicom.dcmread(io.BytesIO(s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()))
    assert "PatientAge" not in stored and stored.PatientBirthDate == "" and stored.StudyDate == ""
    for text in (warnings, kind, classification):
        assert original.PatientBirthDate not in text and original.StudyDate not in text
    assert "64" not in warnings.replace("18-64", "")  # the band, never the age (64.5 years)


def test_a_population_mismatch_is_refused_when_the_setting_says_so(gateway_with, database, s3_server):
    strict = gateway_with(REFUSE_OTHER_POPULATION="true")
    before = stored_counts(database, s3_server)
    adult, _ = send(strict, real_file("RG1_J2KR.dcm"), model=XRAY)  # an adult for the pediatric model
    assert adult.status_code == 422, adult.text
    assert (adult.json()["code"], adult.json()["found"]) == ("population_mismatch", "18-64")
    child, _ = send(strict, edited("RG1_J2KR.dcm", PatientAge="003Y"), model=ADULT_XRAY)
    assert child.status_code == 422 and (child.json()["code"], child.json()["found"]) == ("population_mismatch", "1-5")
    assert stored_counts(database, s3_server) == before
    routed = {age: send(strict, edited("RG1_J2KR.dcm", PatientAge=age))[0].json() for age in ("003Y", "064Y")}
    assert [(body["model_name"], body["warnings"], body["age_band"]) for body in routed.values()] == [
        (XRAY, [], "1-5"),
        (ADULT_XRAY, [], "18-64"),
    ]


def test_the_models_are_listed_with_their_cards(admin_client, clinician_client, gateway):
    import httpx

    models = {model["name"]: model for model in clinician_client.get("/models").json()}
    xray_card = ModelCard.read(MODEL_REPOSITORY / XRAY / latest_model_version(XRAY))
    xray = models[XRAY]
    assert xray["role"] == "classifier" and xray["version"] == xray_card.version
    assert xray["intended_use"] == xray_card.intended_use.model_dump()
    assert xray["metrics"]["test"]["roc_auc"] == xray_card.metrics["test"]["roc_auc"]
    assert [item["label"] for item in xray["classes"]] == xray_card.labels
    kind = models["image-kind"]
    assert kind["role"] == "image_kind" and kind["intended_use"] is None
    assert [item["label"] for item in kind["classes"]] == ["chest_ct", "chest_xray", "other"]
    assert clinician_client.get(f"/models/{XRAY}").json() == xray
    adult = models[ADULT_XRAY]
    adult_card = ModelCard.read(MODEL_REPOSITORY / ADULT_XRAY / latest_model_version(ADULT_XRAY))
    assert adult["role"] == "classifier" and adult["intended_use"] == adult_card.intended_use.model_dump()
    assert adult["intended_use"]["population"]["min_age_years"] == 18
    missing = clinician_client.get("/models/no-such-model")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_model"
    assert httpx.get(f"{gateway.url}/models").status_code == 401


def test_the_refusal_codes_are_in_the_openapi_schema(admin_client):
    from cxr_model.intended_use import RefusalCode

    schema = admin_client.get("/openapi.json").json()
    answer = schema["paths"]["/classify"]["post"]["responses"]["422"]
    codes = list(RefusalCode.__args__)
    assert all(f"`{code}`" in answer["description"] for code in codes)
    assert schema["components"]["schemas"]["Refusal"]["properties"]["code"]["enum"] == codes
    refs = [item["$ref"] for item in answer["content"]["application/json"]["schema"]["anyOf"]]
    assert "#/components/schemas/IntendedUseProblem" in refs
    result = schema["components"]["schemas"]["ResultOut"]["properties"]
    assert {"image_kind", "warnings", "age_band"} <= set(result)
