"""A hospital system's first day with the gateway, as a script (docs/integration.md walks through it).

    CXR_API_URL=https://cxr.example.org/api CXR_CLIENT_ID=... CXR_CLIENT_SECRET=... \
        python hospital_client.py chest.dcm

It takes a token with the client-credentials flow, classifies the DICOM file with an Idempotency-Key
(retrying on 503 after Retry-After), saves the DICOM SR filed in the hospital's own study, fetches the
FHIR DiagnosticReport, pushes the same file by STOW-RS as a DICOMweb router would (the STOW-RS intake
keeps one result per SOP Instance UID, however often the instance is sent), finds both results by the
image's SOP Instance UID, and prints a JSON summary.
Needs only httpx and pydicom.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx
import pydicom

ATTEMPTS = 3


def token(api: httpx.Client, client_id: str, client_secret: str) -> str:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
    answer = api.post("auth/token", data=form)
    answer.raise_for_status()
    return answer.json()["access_token"]


def with_retries(send) -> httpx.Response:
    """The answer, retried after Retry-After while the gateway says 503 (a dependency is down)."""
    for attempt in range(1, ATTEMPTS + 1):
        answer = send()
        if answer.status_code != 503 or attempt == ATTEMPTS:
            return answer
        time.sleep(int(answer.headers.get("Retry-After", "5")))
    raise AssertionError("unreachable")


def classify_for_the_pacs(api: httpx.Client, dicom: bytes, external_id: str) -> httpx.Response:
    """POST /classify answering the DICOM SR. The Idempotency-Key is derived from the file, so a retry
    (ours, or after a lost answer) can never classify the image twice."""
    key = "sha256-" + hashlib.sha256(dicom).hexdigest()[:64]
    return with_retries(
        lambda: api.post(
            "classify",
            files={"file": ("image.dcm", dicom, "application/dicom")},
            data={"external_id": external_id},
            headers={"Idempotency-Key": key, "Accept": "application/dicom"},
        )
    )


def stow(api: httpx.Client, dicom: bytes) -> dict:
    """STOW-RS: the same file as a DICOMweb router would push it."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), dicom, f"\r\n--{boundary}--\r\n".encode()]
    )
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    answer = with_retries(lambda: api.post("dicomweb/studies", content=body, headers={"Content-Type": content_type}))
    answer.raise_for_status()
    return answer.json()


def main(path: str) -> int:
    base_url = os.environ["CXR_API_URL"].rstrip("/") + "/"
    dicom = Path(path).read_bytes()
    with httpx.Client(base_url=base_url, timeout=60) as api:
        api.headers["Authorization"] = "Bearer " + token(
            api, os.environ["CXR_CLIENT_ID"], os.environ["CXR_CLIENT_SECRET"]
        )

        answer = classify_for_the_pacs(api, dicom, external_id="order-" + Path(path).stem)
        if answer.status_code == 503:
            print(f"gave up after {ATTEMPTS} attempts: {answer.json()['code']}", file=sys.stderr)
            return 2
        if answer.status_code not in (200, 201):  # 422: outside the intended use; the body says why
            print(f"refused: {answer.status_code} {answer.json()['code']}", file=sys.stderr)
            return 1
        report = pydicom.dcmread(io.BytesIO(answer.content))
        Path(path).with_suffix(".sr.dcm").write_bytes(answer.content)  # for the PACS
        result_url = answer.headers["Location"].lstrip("/")

        fhir = api.get(f"{result_url}/fhir").json()  # for the EHR
        pushed = stow(api, dicom)
        instance = pydicom.dcmread(Path(path), stop_before_pixels=True).SOPInstanceUID
        found = api.get("results", params={"sop_instance_uid": instance}).json()

    summary = {
        "result": result_url,
        "sr_study_instance_uid": report.StudyInstanceUID,
        "fhir": {"resourceType": fhir["resourceType"], "status": fhir["status"], "conclusion": fhir["conclusion"]},
        "stow_retrieve_url": pushed["00081199"]["Value"][0]["00081190"]["Value"][0],
        "found_by_sop_instance_uid": [item["id"] for item in found["items"]],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
