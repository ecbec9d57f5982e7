"""Dynamic batching: concurrent callers share onnxruntime calls and each gets exactly its own rows."""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import run_async

from inference.model import OnnxModel
from inference.settings import Settings

MODEL = "pneumonia-xray"
COMMITTED_MODEL = Path(__file__).resolve().parents[2] / "models" / MODEL / "2"


@pytest.fixture
def repository(tmp_path) -> Path:
    """Version 1 batches by the server's settings; version 2's card turns batching off."""
    for version, batching in (("1", {}), ("2", {"batching": {"enabled": False}})):
        shutil.copytree(COMMITTED_MODEL, tmp_path / MODEL / version)
        card_path = tmp_path / MODEL / version / "model.json"
        card = json.loads(card_path.read_text())
        card_path.write_text(json.dumps({**card, "version": version, **batching}))
    return tmp_path


@pytest.fixture(scope="module")
def images(data_dir) -> np.ndarray:
    arrays = np.load(data_dir / "pneumoniamnist" / "pneumoniamnist_28.npz")
    return arrays["test_images"][:60].astype(np.float32)[..., None]


def infer(url: str, version: str, batch: np.ndarray) -> httpx.Response:
    tensor = {"name": "image", "shape": list(batch.shape), "datatype": "FP32", "data": batch.ravel().tolist()}
    return httpx.post(f"{url}/v2/models/{MODEL}/versions/{version}/infer", json={"inputs": [tensor]}, timeout=60)


def batch_sizes(url: str) -> dict[str, dict[str, float]]:
    """Per version: how many batches ran, how many rows they held, how many held one row only."""
    found = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        if family.name != "inference_batch_size":
            continue
        for sample in family.samples:
            stats = found.setdefault(sample.labels["version"], {})
            if sample.name.endswith("_count"):
                stats["batches"] = sample.value
            elif sample.name.endswith("_sum"):
                stats["rows"] = sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == 1.0:
                stats["single_row"] = sample.value
    return found


def test_concurrent_requests_are_batched_and_each_caller_gets_its_own_result(start_inference, repository, images):
    url = start_inference(
        {
            "INFERENCE_MODEL_REPOSITORY": str(repository),
            "INFERENCE_MAX_BATCH_SIZE": "16",
            "INFERENCE_MAX_QUEUE_DELAY_US": "20000",
        }
    )
    # requests of one and of two rows, each with its own images
    requests = [images[i : i + 1] for i in range(40)] + [images[i : i + 2] for i in range(40, 60, 2)]
    bad = np.zeros((1, 28, 28), np.float32)  # a wrong shape, sent among the good ones

    def call(job):
        version, batch = job
        return infer(url, version, batch)

    jobs = [("1", batch) for batch in requests] + [("1", bad)] * 5 + [("2", batch) for batch in requests[:20]]
    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(call, jobs))

    reference = OnnxModel.load(COMMITTED_MODEL, Settings())
    for (version, batch), response in zip(jobs, responses):
        if batch is bad:
            assert response.status_code == 400 and "must have shape" in response.json()["error"]
            continue
        assert response.status_code == 200, response.text
        output = response.json()["outputs"][0]
        assert output["shape"] == [len(batch), 2] and response.json()["model_version"] == version
        unbatched = reference.predict({"image": batch})["probabilities"]
        np.testing.assert_array_equal(np.array(output["data"], np.float32).reshape(-1, 2), unbatched)

    stats = batch_sizes(url)
    assert stats["1"]["rows"] == sum(len(batch) for batch in requests)  # every good row ran exactly once
    assert stats["1"]["batches"] > stats["1"]["single_row"]  # batches of more than one request formed
    assert stats["1"]["batches"] < len(requests)
    assert "2" not in stats  # the card turned batching off for version 2


@pytest.mark.parametrize("inline_run_max_ms", [1000.0, 0.0])
def test_a_lone_request_runs_on_the_event_loop_and_concurrent_ones_on_the_models_thread(
    repository, images, inline_run_max_ms
):
    """No hop to the model's thread for the only request in flight (a quick model): same answers either way."""
    import asyncio
    import threading

    from inference.codec import InferRequest, Tensor
    from inference.dataplane import DataPlane
    from inference.repository import ModelRepository

    settings = Settings(model_repository=repository, inline_run_max_ms=inline_run_max_ms)
    model_repository = ModelRepository(settings)
    model_repository.load_all()
    model = model_repository.get(MODEL, "1")  # batching on
    reference = OnnxModel.load(COMMITTED_MODEL, Settings())
    threads: list[str] = []
    loop_thread: list[threading.Thread] = []
    run = model._run

    def recorded_run(inputs, names):
        threads.append("event loop" if threading.current_thread() is loop_thread[0] else "model thread")
        return run(inputs, names)

    model._run = recorded_run  # type: ignore[method-assign]

    def request(i: int) -> InferRequest:
        return InferRequest(inputs=[Tensor("image", "FP32", images[i : i + 1])])

    async def calls():
        loop_thread.append(threading.current_thread())
        dataplane = DataPlane(model_repository, settings)
        alone = await dataplane.infer(MODEL, "1", request(0))
        # arriving together, as under load: each reaches the data plane before any of them runs
        together = await asyncio.gather(*(dataplane.infer(MODEL, "1", request(i)) for i in range(1, 9)))
        dataplane.close()
        return [alone, *together]

    results = run_async(calls())
    for i, result in enumerate(results):
        expected = reference.predict({"image": images[i : i + 1]})["probabilities"]
        np.testing.assert_array_equal(result.outputs["probabilities"], expected)
    if inline_run_max_ms:
        assert threads[0] == "event loop" and set(threads[1:]) == {"model thread"}
    else:
        assert set(threads) == {"model thread"}
    assert len(threads) < len(results)  # the eight concurrent ones shared batches
