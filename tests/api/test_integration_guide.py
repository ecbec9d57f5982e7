"""The integrator's guide's client (docs/examples/hospital_client.py) runs against the real stack."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
from support import new_api_client

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "hospital_client.py"


def run_example(url: str, api_client: dict, dicom: Path) -> subprocess.CompletedProcess:
    env = {
        "CXR_API_URL": url,
        "CXR_CLIENT_ID": api_client["client_id"],
        "CXR_CLIENT_SECRET": api_client["client_secret"],
    }
    return subprocess.run(
        [sys.executable, str(EXAMPLE), str(dicom)], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_the_guides_client_classifies_fetches_sr_and_fhir_and_pushes_by_stow(gateway, admin_client, data_dir, tmp_path):
    dicom = tmp_path / "chest.dcm"
    shutil.copy(data_dir / "dicom" / "RG1_UNCR.dcm", dicom)
    original = pydicom.dcmread(dicom, stop_before_pixels=True)

    ran = run_example(gateway.url, new_api_client(admin_client), dicom)

    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["sr_study_instance_uid"] == original.StudyInstanceUID
    assert pydicom.dcmread(dicom.with_suffix(".sr.dcm")).Modality == "SR"
    assert summary["fhir"]["resourceType"] == "DiagnosticReport" and summary["fhir"]["status"] == "preliminary"
    classified_id = summary["result"].removeprefix("results/")
    stowed_id = summary["stow_retrieve_url"].rsplit("/", 1)[-1]
    assert sorted(summary["found_by_sop_instance_uid"]) == sorted([classified_id, stowed_id])


def test_the_guides_client_retries_a_503_after_retry_after_and_then_gives_up(gateway_with, admin_client, data_dir):
    down = gateway_with(INFERENCE_URL="http://127.0.0.1:9", RETRY_AFTER_SECONDS="1")

    ran = run_example(str(down.base_url), new_api_client(admin_client), data_dir / "dicom" / "RG1_UNCR.dcm")

    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stderr.strip() == "gave up after 3 attempts: inference_unavailable"
