"""Throughput and latency of the inference service next to its baselines: one table, one run.

For the committed model and a compute-heavy model, a VGG-style CNN (the trainer's
`vgg` architecture: four 3x3 conv + max-pool blocks, then Dense(512)) at 300x300 grey with random weights, built with Keras and exported with
tf2onnx into a temporary repository (never committed):

  (a) onnxruntime in-process, at the batch sizes the batcher forms (batch size = concurrency)
  (b) a no-op FastAPI/uvicorn endpoint: the floor any HTTP service pays
  (c) this service (v2 infer, binary tensors), dynamic batching off and on
  (d) a FastAPI endpoint calling Keras `model.predict` per request

Every HTTP row is a separate uvicorn process; the load comes from this process over
keep-alive connections, so client and servers share the machine's cores (the load average
printed at the end tells how busy the machine was besides). Row (d) is the usual quick
endpoint: `predict` runs on the event loop, one request at a time.

    bash scripts/benchmark_inference.sh [--requests 200] [--heavy-requests 48]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "pneumonia-xray"
HEAVY_MODEL = "vgg-300"
CONCURRENCY = (1, 8, 32)


# -- the two web baselines, started as `uvicorn inference_benchmark:<factory> --factory` ----


def noop_app():
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        await request.body()
        return {}

    @app.get("/ready")
    def ready():
        return {}

    return app


def keras_app():
    """Keras `model.predict` per request: raw float32 pixels in, probabilities out."""
    import keras

    import trainer.model  # noqa: F401  registers the trainer's custom layers for loading

    model = keras.models.load_model(os.environ["BENCHMARK_KERAS_MODEL"])
    height, width, channels = model.input_shape[1:]
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        pixels = np.frombuffer(await request.body(), np.float32).reshape(-1, height, width, channels)
        return {"probabilities": model.predict(pixels, verbose=0).tolist()}

    @app.get("/ready")
    def ready():
        return {}

    return app


# -- models -------------------------------------------------------------------------------


@dataclass
class BenchModel:
    name: str
    keras_path: Path
    image: np.ndarray  # one (1, H, W, 1) float32 input row


def latest_version(repository: Path, name: str) -> Path:
    return max((path for path in (repository / name).iterdir() if path.name.isdigit()), key=lambda path: int(path.name))


def build_models(repository: Path, work: Path) -> list[BenchModel]:
    """The committed model, and a VGG-style CNN exported next to it; both also saved as Keras."""
    import keras
    from trainer.config import TrainConfig
    from trainer.model import build_model

    shutil.copytree(REPO_ROOT / "models" / DEFAULT_MODEL, repository / DEFAULT_MODEL)
    config = json.loads((latest_version(repository, DEFAULT_MODEL) / "model.json").read_text())["training"]["config"]
    default = build_model(TrainConfig(filters=tuple(config["filters"]), image_size=config["image_size"]))
    # random weights: only speed and memory matter here
    heavy = build_model(TrainConfig(architecture="vgg", image_size=300, filters=(32, 64, 128, 128)))
    export_to_repository(heavy, repository / HEAVY_MODEL / "1")
    models = []
    for name, model in ((DEFAULT_MODEL, default), (HEAVY_MODEL, heavy)):
        path = work / f"{name}.keras"
        model.save(path)
        size = model.input_shape[1]
        image = np.random.default_rng(0).uniform(0, 255, (1, size, size, 1)).astype(np.float32)
        models.append(BenchModel(name, path, image))
    keras.backend.clear_session()
    return models


def export_to_repository(model, version_dir: Path) -> None:
    from cxr_model.card import ModelCard, Preprocessing, ResizeSpec, file_sha256
    from trainer.export import tensor_specs, to_onnx, write_onnx

    proto = to_onnx(model, opset=17)
    onnx_path = write_onnx(proto.SerializeToString(), version_dir)
    inputs, outputs = tensor_specs(proto)
    size = model.input_shape[1]
    ModelCard(
        name=HEAVY_MODEL,
        version="1",
        task="benchmark only: random weights",
        labels=["normal", "pneumonia"],
        inputs=inputs,
        outputs=outputs,
        preprocessing=Preprocessing(resize=ResizeSpec(width=size, height=size)),
        onnx_sha256=file_sha256(onnx_path),
    ).write(version_dir)


# -- servers --------------------------------------------------------------------------------


class Server:
    def __init__(self, factory: str, env: dict[str, str], ready_path: str, app_dir: Path = REPO_ROOT):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        args = [sys.executable, "-m", "uvicorn", factory, "--factory", "--app-dir", str(app_dir)]
        args += ["--port", str(self.port), "--no-access-log", "--log-level", "warning"]
        started = time.perf_counter()
        self.process = subprocess.Popen(args, env={**os.environ, **env}, cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
        self._wait_ready(ready_path)
        self.ready_seconds = time.perf_counter() - started

    def _wait_ready(self, path: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"not ready at {path} within {timeout} s")

    def memory_mib(self, field: str = "VmRSS") -> float:
        """Resident memory now (VmRSS) or at its peak (VmHWM)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field))) / 1024

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# -- load ---------------------------------------------------------------------------------


@dataclass
class Result:
    row: str
    model: str
    concurrency: int
    per_second: float
    p50_ms: float
    p99_ms: float


def http_request(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(port: int, request: bytes, remaining: list[int], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while remaining[0] > 0:
        remaining[0] -= 1
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().lower().split("\r\n")[1:] if ": " in line)
        await reader.readexactly(int(fields["content-length"]))
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the server answered {head.splitlines()[0]!r}")
        latencies.append(time.perf_counter() - started)
    writer.close()


async def _load(port: int, request: bytes, concurrency: int, count: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, [count // concurrency], latencies) for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def measure_http(row: str, model: str, port: int, request: bytes, concurrency: int, count: int) -> Result:
    count = max(count, concurrency * 2)
    asyncio.run(_load(port, request, concurrency, concurrency * 2))  # warm-up
    elapsed, latencies = asyncio.run(_load(port, request, concurrency, count))
    return _result(row, model, concurrency, len(latencies) / elapsed, latencies)


def measure_onnxruntime(repository: Path, model: BenchModel, batch: int, count: int) -> Result:
    from inference.model import OnnxModel
    from inference.settings import Settings

    onnx_model = OnnxModel.load(latest_version(repository, model.name), Settings())
    feeds = {onnx_model.image_input: np.repeat(model.image, batch, axis=0)}
    calls = max(count // batch, 5)
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        onnx_model.predict(feeds)
        latencies.append(time.perf_counter() - started)
    return _result("(a) onnxruntime in-process", model.name, batch, batch * calls / sum(latencies), latencies)


def _result(row: str, model: str, concurrency: int, per_second: float, latencies: list[float]) -> Result:
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return Result(row, model, concurrency, per_second, cuts[49] * 1000, cuts[98] * 1000)


def v2_request(model: BenchModel) -> bytes:
    body = model.image.tobytes()
    header = json.dumps(
        {
            "inputs": [{"name": "image", "shape": list(model.image.shape), "datatype": "FP32", "parameters": {"binary_data_size": len(body)}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    path = f"/v2/models/{model.name}/infer"
    return http_request(path, header + body, {"Inference-Header-Content-Length": str(len(header))})


# -- the run --------------------------------------------------------------------------------


def run(requests: int, heavy_requests: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="inference-benchmark-"))
    repository = work / "repository"
    try:
        models = build_models(repository, work)
        counts = {DEFAULT_MODEL: requests, HEAVY_MODEL: heavy_requests}
        results: list[Result] = []
        facts = {"load average at start": " ".join(f"{load:.1f}" for load in os.getloadavg())}
        for model in models:
            for batch in CONCURRENCY:
                results.append(measure_onnxruntime(repository, model, batch, counts[model.name]))
        results += run_http_row("(b) no-op FastAPI", noop_app_server(), models, counts, lambda m: http_request("/predict", m.image.tobytes()))
        for batching in ("off", "on"):
            env = {"INFERENCE_MODEL_REPOSITORY": str(repository), "INFERENCE_BATCHING": str(batching == "on").lower()}
            server = Server("inference.app:create_app", env, "/v2/health/ready")
            facts[f"service ready after start (batching {batching})"] = f"{server.ready_seconds:.1f} s"
            results += run_http_row(f"(c) this service, batching {batching}", server, models, counts, v2_request, stop=False)
            busy = server.memory_mib()
            time.sleep(3)  # the service gives freed memory back after 1 s without a call
            facts[f"service RSS with both models loaded (batching {batching})"] = (
                f"{server.memory_mib():.0f} MiB idle, {busy:.0f} MiB right after the load, "
                f"peak {server.memory_mib('VmHWM'):.0f} MiB"
            )
            server.stop()
        for model in models:
            server = Server("inference_benchmark:keras_app", {"BENCHMARK_KERAS_MODEL": str(model.keras_path)}, "/ready", Path(__file__).parent)
            results += run_http_row("(d) Keras predict per request", server, [model], counts, lambda m: http_request("/predict", m.image.tobytes()))
        facts["load average at end"] = " ".join(f"{load:.1f}" for load in os.getloadavg())
        print_table(results)
        print_ratios(results)
        for name, value in facts.items():
            print(f"{name}: {value}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def noop_app_server() -> Server:
    return Server("inference_benchmark:noop_app", {}, "/ready", Path(__file__).parent)


def run_http_row(row, server: Server, models, counts, request_of, stop: bool = True) -> list[Result]:
    try:
        return [
            measure_http(row, model.name, server.port, request_of(model), concurrency, counts[model.name])
            for model in models
            for concurrency in CONCURRENCY
        ]
    finally:
        if stop:
            server.stop()


def print_table(results: list[Result]) -> None:
    print(f"\n| {'row':<34} | {'model':<14} | {'conc.':>5} | {'req/s':>8} | {'p50 ms':>8} | {'p99 ms':>8} |")
    print(f"|{'-' * 36}|{'-' * 16}|{'-' * 7}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for result in sorted(results, key=lambda r: (r.model, r.row, r.concurrency)):
        print(
            f"| {result.row:<34} | {result.model:<14} | {result.concurrency:>5} | {result.per_second:>8.1f} | "
            f"{result.p50_ms:>8.2f} | {result.p99_ms:>8.2f} |"
        )
    print("(a): batch size in the concurrency column, rows/s in the req/s column, latency per call\n")


def print_ratios(results: list[Result]) -> None:
    by_key = {(r.row[:3], r.model, r.concurrency): r.per_second for r in results if "batching off" not in r.row}
    print("throughput ratios, (c) = this service with batching on:")
    for model in (DEFAULT_MODEL, HEAVY_MODEL):
        for concurrency in CONCURRENCY:
            service = by_key[("(c)", model, concurrency)]
            ratios = ", ".join(f"(c)/{row} = {service / by_key[(row, model, concurrency)]:.2f}" for row in ("(d)", "(b)", "(a)"))
            print(f"  {model:<14} concurrency {concurrency:>2}: {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per cell, committed model")
    parser.add_argument("--heavy-requests", type=int, default=48, help="requests per cell, VGG-style model")
    arguments = parser.parse_args()
    run(arguments.requests, arguments.heavy_requests)


if __name__ == "__main__":
    main()
