"""Requests that cost a gateway pod its memory, each against a real gateway process of its own: its peak
resident memory (VmHWM) is read from /proc before and after the attack.

- previews: a 24-megapixel DICOM rendered by six callers at once (whole-frame float64 was ~0.6 GiB each);
- Argon2: parallel sign-ins with made-up names (64 MiB a check, unbounded, without an account);
- uploads: bodies read before the token was checked, and chunked bodies read whole past the limit.
"""

import random
import re
import socket
import struct
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid
from support import dicom_file

MIB = 1024 * 1024


def gateway_status(url: str, field: str) -> int:
    """A field of /proc/<pid>/status (in KiB) of the uvicorn process serving `url`."""
    port = url.rsplit(":", 1)[1].encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            arguments = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gateway.main:create_app" in arguments and port in arguments:
            status = (cmdline.parent / "status").read_text()
            return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field + ":")))
    raise LookupError(f"no gateway process on port {port.decode()}")


def peak_growth_mib(url: str, attack) -> tuple[float, list]:
    """How far the attack raised the gateway's peak resident memory, and the attack's answers."""
    before = gateway_status(url, "VmHWM")
    answers = attack()
    grown = (gateway_status(url, "VmHWM") - before) / 1024
    print(f"peak RSS {before / 1024:.0f} -> {before / 1024 + grown:.0f} MiB (+{grown:.0f})")  # shown with -s
    return grown, answers


def in_parallel(count: int, call) -> list:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


# previews


def rle_dicom(side: int) -> bytes:
    """A windowed 16-bit DX of side x side pixels, RLE-compressed to about side**2 / 32 bytes (all zeros)."""
    segment = b"\x81\x00" * (side * side // 128)  # 128 repeats of 0 each: one byte plane
    frame = struct.pack("<16I", 2, 64, 64 + len(segment), *[0] * 13) + segment + segment
    dataset = Dataset()
    dataset.SOPClassUID, dataset.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    dataset.Modality, dataset.BodyPartExamined = "DX", "CHEST"
    dataset.Rows = dataset.Columns = side
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.RescaleSlope, dataset.RescaleIntercept = "1.5", "-10"
    dataset.WindowCenter, dataset.WindowWidth = "2000", "4000"
    dataset.PixelData = encapsulate([frame])
    dataset["PixelData"].VR = "OB"
    return dicom_file(dataset, RLELossless)


def preview(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.post("/preview", files={"file": ("x.dcm", data)}, timeout=120)


def test_parallel_previews_of_a_large_dicom_stay_within_a_bounded_memory(gateway_with):
    client = gateway_with()
    data = rle_dicom(4896)  # 24 megapixels (under MAX_IMAGE_PIXELS) in 0.7 MiB

    grown, answers = peak_growth_mib(str(client.base_url), lambda: in_parallel(6, lambda: preview(client, data)))

    assert {answer.status_code for answer in answers} <= {200, 503}, [a.text for a in answers if a.status_code >= 400]
    assert any(answer.status_code == 200 for answer in answers)
    # two renders at a time (IMAGE_DECODE_SLOTS), each ~4 bytes a pixel of decoded frame and 8-bit output
    assert grown < 400, f"the gateway's peak RSS grew {grown:.0f} MiB"


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(gateway_with):
    client = gateway_with()
    data = rle_dicom(6144)  # 37.7 megapixels: under the inference service's limit, over the gateway's

    grown, answers = peak_growth_mib(
        str(client.base_url),
        lambda: [preview(client, data), client.post("/classify", files={"file": ("x.dcm", data)})],
    )

    for answer in answers:
        assert (answer.status_code, answer.json()["code"]) == (422, "image_too_large"), answer.text
    assert grown < 50, f"the gateway's peak RSS grew {grown:.0f} MiB"


def test_renders_past_the_slots_get_503_with_retry_after(gateway_with):
    client = gateway_with(IMAGE_DECODE_SLOTS="1", IMAGE_DECODE_WAIT_SECONDS="0")
    data = rle_dicom(3072)

    answers = in_parallel(4, lambda: preview(client, data))

    busy = [answer for answer in answers if answer.status_code == 503]
    assert busy and any(answer.status_code == 200 for answer in answers), [a.status_code for a in answers]
    assert all(answer.json()["code"] == "decoding_busy" and answer.headers["Retry-After"] for answer in busy)


# Argon2


def sign_in_from_anywhere(url: str) -> httpx.Response:
    """A sign-in with a made-up name, from an address of its own (as the trusted proxy tells): the sign-in
    throttle, which counts per address too, lets each through to its password check."""
    username, address = f"nobody-{uuid.uuid4().hex}", f"10.{random.randrange(256)}.{random.randrange(256)}.7"
    return httpx.post(
        f"{url}/auth/token",
        data={"username": username, "password": "guess"},
        headers={"X-Forwarded-For": address},
        timeout=60,
    )


def test_parallel_sign_ins_with_made_up_names_stay_within_a_bounded_memory(gateway_with):
    url = str(gateway_with(TRUSTED_PROXIES="127.0.0.1").base_url)

    grown, answers = peak_growth_mib(url, lambda: in_parallel(12, lambda: sign_in_from_anywhere(url)))

    assert {answer.status_code for answer in answers} <= {401, 503}, [answer.text for answer in answers]
    # at most PASSWORD_CHECK_SLOTS (4) checks of 19 MiB at once; 64 MiB each, all at once, before
    assert grown < 120, f"the gateway's peak RSS grew {grown:.0f} MiB"


def test_password_checks_past_the_slots_get_503_with_retry_after(gateway_with):
    url = str(
        gateway_with(TRUSTED_PROXIES="127.0.0.1", PASSWORD_CHECK_SLOTS="1", PASSWORD_CHECK_WAIT_SECONDS="0").base_url
    )

    answers = in_parallel(8, lambda: sign_in_from_anywhere(url))

    busy = [answer for answer in answers if answer.status_code == 503]
    assert busy and all(answer.json()["code"] == "sign_in_busy" and answer.headers["Retry-After"] for answer in busy)
    assert all(answer.status_code == 401 for answer in answers if answer not in busy)


# uploads


def raw_request(url: str, head: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=10)
    connection.sendall(head.encode())
    return connection


def answer_of(connection: socket.socket) -> str:
    """The answer the gateway has sent (headers and body), or "" when none came within the timeout."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            if length and len(body) >= int(length.group(1)):
                break
    except TimeoutError:
        if not received:
            return ""
        connection.settimeout(5)
        return received.decode(errors="replace") + answer_of(connection)
    return received.decode(errors="replace")


@pytest.mark.parametrize("token", [None, "forged.token.value"], ids=["no token", "invalid token"])
def test_an_upload_without_a_valid_token_is_refused_before_its_body_is_read(gateway, token):
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    connection = raw_request(
        gateway.url,
        "POST /classify HTTP/1.1\r\nHost: gateway\r\n"
        f"{authorization}Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {10 * MIB}\r\n\r\n",
    )
    with connection:
        connection.sendall(b"--b\r\n" + b"x" * 1000)  # 1 KB of the announced 10 MiB, then nothing

        answer = answer_of(connection)

    assert answer.startswith("HTTP/1.1 401"), answer or "no answer within 10 s: the gateway waits for the body"
    assert '"code":"not_authenticated"' in answer


def test_a_chunked_body_is_cut_at_the_limit(gateway_with, gateway):
    client = gateway_with(MAX_UPLOAD_BYTES=str(MIB))
    token = client.headers["Authorization"].removeprefix("Bearer ")
    connection = raw_request(
        str(client.base_url),
        "POST /classify HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    chunk = b"x" * (64 * 1024)
    sent, answer = 0, ""
    with connection:
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
        connection.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        connection.settimeout(0.05)
        try:
            while sent < 64 * MIB and not answer:
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                answer = answer_of(connection)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway stopped reading and closed the connection
        connection.settimeout(10)
        answer = answer or answer_of(connection)
    # answered while the body was still arriving: a little over the 1 MiB limit, plus what the sockets buffer
    assert answer.startswith("HTTP/1.1 413"), answer or f"no answer after {sent / MIB:.0f} MiB"
    assert '"code":"file_too_large"' in answer
    assert sent < 16 * MIB, f"{sent / MIB:.0f} MiB were sent before the answer"
    time.sleep(0.1)
    assert httpx.get(f"{gateway.url}/health/live").status_code == 200
