"""The running service through KServe's own Python SDK client (`kserve.InferenceRESTClient`, v2).

KServe's client sends the model's name in the request body as well as in the path, and reads
answers its own way: it could not call the service while the body's fields were checked
strictly. The `kserve` package cannot be installed next to the services' pins (it requires
protobuf<7), so the client runs in the KServe environment the peer benchmark makes under its
work folder (made on first use, about a minute; CXR_PEER_BENCH_DIR chooses the folder), and
the test compares what it got with tritonclient's answers for the same images.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from peer_benchmark import DEFAULT_WORK_DIR, PEERS_DIR, ensure_venv  # noqa: E402

MODEL = "pneumonia-xray"


@pytest.fixture(scope="module")
def kserve_python() -> Path:
    work = Path(os.environ.get("CXR_PEER_BENCH_DIR", DEFAULT_WORK_DIR))
    return ensure_venv(work, "kserve", PEERS_DIR / "requirements-kserve.txt", log=lambda message: None)


@pytest.fixture(scope="module")
def images(data_dir) -> np.ndarray:
    arrays = np.load(data_dir / "pneumoniamnist" / "pneumoniamnist_28.npz")
    return arrays["test_images"][:8].astype(np.float32)[..., None]


@pytest.fixture(scope="module")
def kserve_answers(kserve_python, inference_url, images) -> dict:
    given = json.dumps({"url": inference_url, "model": MODEL, "images": images.tolist()})
    completed = subprocess.run(
        [str(kserve_python), str(Path(__file__).with_name("kserve_client_calls.py"))],
        input=given, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.fixture(scope="module")
def triton_probabilities(inference_url, images) -> np.ndarray:
    client = triton.InferenceServerClient(inference_url.removeprefix("http://"), network_timeout=60)
    tensor = triton.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=False)
    result = client.infer(MODEL, [tensor], outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)])
    client.close()
    return result.as_numpy("probabilities")


def test_health_and_readiness_through_the_kserve_client(kserve_answers):
    assert kserve_answers["live"] is True and kserve_answers["ready"] is True
    assert kserve_answers["model_ready"] is True and kserve_answers["unknown_model_ready"] is False


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_the_kserve_client_infers_and_gets_what_tritonclient_gets(kserve_answers, triton_probabilities, encoding):
    answer = kserve_answers[encoding]
    assert answer["id"] == f"kserve-{encoding}" and answer["model_name"] == MODEL
    assert (answer["output"], answer["datatype"], answer["shape"]) == ("probabilities", "FP32", [8, 2])
    np.testing.assert_array_equal(np.asarray(answer["probabilities"], np.float32), triton_probabilities)


def test_a_body_naming_another_model_than_the_path_is_refused(kserve_answers):
    assert kserve_answers["mismatch"]["status"] == 400
    assert "model_name 'knee-mri' is not the model in the path" in kserve_answers["mismatch"]["error"]
