"""Previews a browser can show: POST /preview before classifying, GET /results/{id}/preview after."""

import io

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from support import dicom_file

from cxr_model.images import decode_image
from gateway.intake import Decoding
from gateway.preview import preview_of


@pytest.fixture(scope="module")
def chest_dicom(data_dir) -> bytes:
    return (data_dir / "dicom" / "RG1_UNCR.dcm").read_bytes()


def synthetic_dicom(pixels: np.ndarray, photometric: str, **attributes) -> bytes:
    """A minimal 16-bit greyscale DICOM file holding `pixels`."""
    dataset = Dataset()
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.Modality = "CR"
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    return dicom_file(dataset, ExplicitVRLittleEndian, **attributes)


def grey_levels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


def render_dicom(data: bytes) -> bytes:
    rendered = preview_of(data, Decoding.of(25_000_000, 1, 0))
    assert rendered.media_type == "image/png"
    return rendered.data


RAMP = np.array([[0, 1000, 2000, 3000, 4000]])


def test_the_window_of_the_file_maps_to_black_and_white():
    rendered = grey_levels(render_dicom(synthetic_dicom(RAMP, "MONOCHROME2", WindowCenter=2000, WindowWidth=2000)))
    assert rendered.tolist() == [[0, 0, 128, 255, 255]]


def test_monochrome1_is_inverted_so_that_air_is_black():
    rendered = grey_levels(render_dicom(synthetic_dicom(RAMP, "MONOCHROME1", WindowCenter=2000, WindowWidth=2000)))
    assert rendered.tolist() == [[255, 255, 127, 0, 0]]


def test_rescale_applies_before_the_window():
    data = synthetic_dicom(
        RAMP, "MONOCHROME2", RescaleSlope=1, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=2000
    )
    assert grey_levels(render_dicom(data)).tolist() == [[0, 128, 255, 255, 255]]


def test_without_a_window_the_values_are_stretched():
    rendered = grey_levels(render_dicom(synthetic_dicom(np.arange(0, 1000).reshape(10, 100), "MONOCHROME2")))
    assert rendered.min() == 0 and rendered.max() == 255


def test_the_preview_is_the_image_the_model_decodes(chest_dicom):
    """The same decoder makes the model's input: the preview is what the model saw before its crop and resize."""
    assert np.array_equal(grey_levels(render_dicom(chest_dicom)), np.asarray(decode_image(chest_dicom)))


def test_a_dicom_upload_is_rendered_and_nothing_is_stored(admin_client, chest_dicom, s3_server):
    original = pydicom.dcmread(io.BytesIO(chest_dicom), stop_before_pixels=True)
    results = admin_client.get("/results", params={"limit": 1}).json()["total"]
    objects = len(s3_server.keys())

    response = admin_client.post("/preview", files={"file": ("chest.dcm", chest_dicom, "application/dicom")})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert grey_levels(response.content).shape == (original.Rows, original.Columns)
    assert admin_client.get("/results", params={"limit": 1}).json()["total"] == results
    assert len(s3_server.keys()) == objects


def test_a_jpeg_upload_is_previewed_as_it_is(admin_client, sample_xrays):
    data = sample_xrays["normal"][0].read_bytes()
    response = admin_client.post("/preview", files={"file": ("x.jpg", data)})
    assert response.status_code == 200
    assert (response.headers["content-type"], response.content) == ("image/jpeg", data)


def test_a_file_that_is_not_an_image_gets_a_problem(admin_client):
    response = admin_client.post("/preview", files={"file": ("notes.txt", b"not an image")})
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_a_broken_dicom_gets_a_problem(admin_client, chest_dicom):
    dataset = pydicom.dcmread(io.BytesIO(chest_dicom))
    del dataset.PixelData
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    response = admin_client.post("/preview", files={"file": ("empty.dcm", buffer.getvalue())})
    assert response.status_code == 422
    assert response.json()["code"] == "dicom_without_pixel_data"


def test_a_dicom_whose_pixels_cannot_be_decoded_is_not_renderable(admin_client):
    data = synthetic_dicom(RAMP, "MONOCHROME2")
    truncated = data[: data.rindex(RAMP.astype(np.uint16).tobytes())] + b"\x00\x00"  # one pixel of five
    response = admin_client.post("/preview", files={"file": ("short.dcm", truncated)})
    assert response.status_code == 422
    assert response.json()["code"] == "dicom_not_renderable"


def test_preview_needs_a_signed_in_caller(gateway, chest_dicom):
    response = httpx.post(f"{gateway.url}/preview", files={"file": ("chest.dcm", chest_dicom)})
    assert response.status_code == 401


def test_a_stored_dicom_result_is_previewed_as_png(admin_client, chest_dicom):
    result = admin_client.post("/classify", files={"file": ("chest.dcm", chest_dicom)}).json()

    response = admin_client.get(f"/results/{result['id']}/preview")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "private, no-store"
    assert grey_levels(response.content).shape == (1955, 1841)


def test_a_stored_jpeg_result_is_previewed_as_stored(admin_client, sample_xrays):
    result = admin_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())}).json()

    preview = admin_client.get(f"/results/{result['id']}/preview")

    assert preview.status_code == 200
    assert preview.content == admin_client.get(result["image"]["url"]).content


def test_another_clients_result_has_no_preview(admin_client, service_client, sample_xrays):
    result = admin_client.post("/classify", files={"file": ("x.jpg", sample_xrays["normal"][0].read_bytes())}).json()
    response = service_client.get(f"/results/{result['id']}/preview")
    assert response.status_code == 404
    assert response.json()["code"] == "result_not_found"
