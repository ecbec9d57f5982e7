"""What of an upload is kept: JPEG and PNG without their metadata (the pixels unchanged), polyglots that
smuggle a DICOM header refused, and DICOM whose pixels may carry burned-in text refused or warned of by
setting. Each against the real gateway, the real object store and the real inference service."""

import io
import struct
import uuid
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo
from support import dicom_file, stored_counts

NAME = "Doe^Jane"  # what a hospital's metadata would hold: it must never reach the object store
DATE = "19610412"


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def with_segments(jpeg: bytes, *segments: bytes) -> bytes:
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def exif(orientation: int) -> bytes:
    tags = Image.Exif()
    tags[0x0112] = orientation  # Orientation
    tags[0x013B] = NAME  # Artist
    tags[0x010E] = f"chest PA of {NAME}, born {DATE}"  # ImageDescription
    return b"Exif\0\0" + tags.tobytes()


def jpeg_with_metadata(jpeg: bytes, orientation: int = 1) -> bytes:
    xmp = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>{NAME}</dc:creator></x:xmpmeta>'.encode()
    return with_segments(
        jpeg,
        jpeg_segment(0xE1, exif(orientation)),
        jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0" + xmp),
        jpeg_segment(0xED, b"Photoshop 3.0\0" + NAME.encode()),  # APP13 (IPTC)
        jpeg_segment(0xFE, f"patient {NAME} {DATE}".encode()),  # COM
    )


def png_with_metadata(image: Image.Image) -> bytes:
    info = PngInfo()
    info.add_text("Author", NAME)
    info.add_itxt("Description", f"born {DATE}", lang="en")
    info.add_text("Comment", f"{NAME} {DATE}", zip=True)  # zTXt
    tags = Image.Exif()
    tags[0x013B] = NAME  # Artist
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info, exif=tags)
    return buffer.getvalue()


def dicom_header_with_patient_name() -> bytes:
    dataset = pydicom.Dataset()
    dataset.PatientName, dataset.PatientID, dataset.PatientBirthDate = NAME, "MRN-0042", DATE
    dataset.SOPClassUID, dataset.SOPInstanceUID = pydicom.uid.SecondaryCaptureImageStorage, pydicom.uid.generate_uid()
    return dicom_file(dataset, pydicom.uid.ExplicitVRLittleEndian)


def classify(client, data: bytes):
    return client.post("/classify", files={"file": ("upload", data, "application/octet-stream")})


def displayed(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(ImageOps.exif_transpose(image))


@pytest.fixture(scope="module")
def chest_jpeg(sample_xrays) -> bytes:
    return sample_xrays["pneumonia"][0].read_bytes()


def test_a_jpeg_is_stored_without_its_metadata_and_with_its_pixels_and_orientation(admin_client, chest_jpeg):
    upright = Image.open(io.BytesIO(chest_jpeg))
    upright = upright.crop((0, 0, upright.width, upright.height * 4 // 5))  # wider than high
    rotated = io.BytesIO()  # stored on its side with orientation 6: shown upright, as the model saw it
    upright.transpose(Image.Transpose.ROTATE_90).save(rotated, "JPEG", quality=95)
    sent = jpeg_with_metadata(rotated.getvalue(), orientation=6)

    response = classify(admin_client, sent)

    assert response.status_code == 201, response.text
    stored = admin_client.get(response.json()["image"]["url"]).content
    for secret in (NAME.encode(), DATE.encode(), b"xmpmeta", b"Photoshop"):
        assert secret in sent and secret not in stored
    np.testing.assert_array_equal(displayed(stored), displayed(sent))  # not re-encoded: the same pixels
    assert dict(Image.open(io.BytesIO(stored)).getexif()) == {0x0112: 6}  # the orientation alone is kept
    assert response.json()["image"]["width"] > response.json()["image"]["height"]  # upright, as displayed


def test_a_png_is_stored_without_its_text_chunks_and_with_its_pixels(admin_client, chest_jpeg):
    image = Image.open(io.BytesIO(chest_jpeg)).convert("L")
    sent = png_with_metadata(image)

    response = classify(admin_client, sent)

    assert response.status_code == 201, response.text
    stored = admin_client.get(response.json()["image"]["url"]).content
    for secret in (NAME.encode(), b"tEXt", b"iTXt", b"zTXt", b"eXIf"):
        assert secret in sent and secret not in stored
    np.testing.assert_array_equal(displayed(stored), np.asarray(image))


POLYGLOTS = {
    "JPEG comment holding a DICOM file": lambda jpeg: with_segments(
        jpeg, jpeg_segment(0xFE, dicom_header_with_patient_name())
    ),
    "JPEG APP segment with the DICOM magic at offset 128": lambda jpeg: with_segments(
        jpeg, jpeg_segment(0xE9, b"\0" * 124 + b"DICM" + dicom_header_with_patient_name()[132:])
    ),
    "JPEG with a DICOM file after its end": lambda jpeg: jpeg + dicom_header_with_patient_name(),
    "PNG with a DICOM file in a private chunk": lambda jpeg: png_chunk_after_header(
        png_of(jpeg), b"dcMp", dicom_header_with_patient_name()
    ),
    "PNG with a DICOM file after IEND": lambda jpeg: png_of(jpeg) + dicom_header_with_patient_name(),
}


def png_of(jpeg: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("L").save(buffer, "PNG")
    return buffer.getvalue()


def png_chunk_after_header(png: bytes, kind: bytes, payload: bytes) -> bytes:
    chunk = struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header_end = 8 + 8 + 13 + 4
    return png[:header_end] + chunk + png[header_end:]


@pytest.mark.parametrize("case", POLYGLOTS, ids=list(POLYGLOTS))
def test_a_polyglot_carrying_a_dicom_header_is_refused(admin_client, database, s3_server, chest_jpeg, case):
    sent = POLYGLOTS[case](chest_jpeg)
    before = stored_counts(database, s3_server)

    response = classify(admin_client, sent)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "polyglot_image"
    assert stored_counts(database, s3_server) == before


# burned-in text


def chest_dicom(data_dir, **attributes) -> bytes:
    """RG1 (a CR chest PA of an adult) at a third of its size, with some attributes set (None deletes one)."""
    dataset = pydicom.dcmread(data_dir / "dicom" / "RG1_UNCR.dcm")
    pixels = np.ascontiguousarray(dataset.pixel_array[::3, ::3])
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.PixelData = pixels.tobytes()
    return dicom_file(dataset, **attributes)


SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BURNED_IN = {
    "BurnedInAnnotation YES": {"BurnedInAnnotation": "YES"},
    "a secondary capture stating nothing": {"SOPClassUID": SECONDARY_CAPTURE, "BurnedInAnnotation": None},
}


@pytest.mark.parametrize("case", BURNED_IN, ids=list(BURNED_IN))
def test_a_dicom_with_burned_in_text_is_refused_by_default(admin_client, database, s3_server, data_dir, case):
    before = stored_counts(database, s3_server)
    request_id = uuid.uuid4().hex

    response = admin_client.post(
        "/classify",
        files={"file": ("upload", chest_dicom(data_dir, **BURNED_IN[case]))},
        headers={"X-Request-ID": request_id},
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "burned_in_annotation"
    assert stored_counts(database, s3_server) == before
    events = admin_client.get("/audit", params={"action": "result.classify", "limit": 50}).json()["items"]
    [event] = [event for event in events if event["request_id"] == request_id]
    assert (event["outcome"], event["detail"]) == ("failure", "burned_in_annotation")


@pytest.mark.parametrize(
    "attributes",
    [{"BurnedInAnnotation": "NO"}, {"BurnedInAnnotation": None}],
    ids=["stated NO", "a radiograph stating nothing"],
)
def test_a_radiograph_without_burned_in_text_is_classified(admin_client, data_dir, attributes):
    response = classify(admin_client, chest_dicom(data_dir, **attributes))

    assert response.status_code == 201, response.text
    assert "burned_in_annotation" not in [warning["code"] for warning in response.json()["warnings"]]


def test_with_the_warn_setting_burned_in_text_is_stored_with_a_warning(gateway_with, data_dir):
    warned = gateway_with(BURNED_IN_ANNOTATION="warn")

    response = classify(warned, chest_dicom(data_dir, BurnedInAnnotation="YES"))

    assert response.status_code == 201, response.text
    [warning] = [warning for warning in response.json()["warnings"] if warning["code"] == "burned_in_annotation"]
    assert warning["found"] == "BurnedInAnnotation YES"
    assert warned.get(f"/results/{response.json()['id']}").json()["warnings"] == response.json()["warnings"]
