"""Limits: body size, decoded pixels, request timeout and a bounded number of requests at once."""

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image

MODEL = "pneumonia-xray"


def classify(url: str, content: bytes) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{MODEL}/classify", content=content, timeout=60)


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_body_and_pixel_limits(start_inference, data_dir, sample_xrays):
    url = start_inference({"INFERENCE_MAX_BODY_BYTES": "100000", "INFERENCE_MAX_IMAGE_PIXELS": "1000000"})
    response = classify(url, (data_dir / "dicom" / "RG1_UNCR.dcm").read_bytes())  # 7 MB
    assert response.status_code == 413 and response.json()["code"] == "image_too_large"
    response = httpx.post(f"{url}/v2/models/{MODEL}/infer", content=b"{" + b" " * 200_000 + b"}")
    assert response.status_code == 413

    small_file_many_pixels = png(1200, 1200)
    assert len(small_file_many_pixels) < 100_000
    response = classify(url, small_file_many_pixels)
    assert response.status_code == 413 and "1200x1200" in response.json()["error"]
    assert classify(url, png(1000, 1000)).status_code == 200
    assert classify(url, sample_xrays["normal"][0].read_bytes()).status_code == 200


def test_a_slow_request_gets_504_and_the_service_stays_up(start_inference, data_dir, sample_xrays):
    url = start_inference({"INFERENCE_REQUEST_TIMEOUT_SECONDS": "0.005"})
    response = classify(url, (data_dir / "dicom" / "RG1_UNCR.dcm").read_bytes())  # about 40 ms to decode
    assert response.status_code == 504 and response.json()["code"] == "timeout"
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200


def test_requests_beyond_the_queue_bound_get_503(start_inference, data_dir):
    url = start_inference({"INFERENCE_MAX_QUEUED_REQUESTS": "1"})
    radiograph = (data_dir / "dicom" / "RG1_UNCR.dcm").read_bytes()
    statuses = []
    for _ in range(3):  # concurrency is up to the scheduler; a few rounds make an overlap certain
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: classify(url, radiograph), range(8)))
        statuses += [response.status_code for response in responses]
        busy = [response for response in responses if response.status_code == 503]
        assert all(response.json()["code"] == "queue_full" for response in busy)
        if busy and 200 in statuses:
            break
    assert set(statuses) == {200, 503}
