"""This inference service next to KServe's and MLServer's Python model servers: one table.

    bash scripts/benchmark_peers.sh [--requests 2000] [--baseline HEAD] [--quick] [--profile]

Every server serves the same ONNX file (models/pneumonia-xray/2/model.onnx) with the same
onnxruntime build and settings (intra_op and inter_op threads 1, no spinning, all graph
optimizations), each in its own process, each with its own minimal onnxruntime model class:

  this service     the working tree's `inference` package (batching on, as shipped), from .venv
  this service @R  (--baseline R) the same at git revision R, from `git archive` (before/after)
  KServe           kserve.Model in benchmarks/peers/kserve_onnx.py (gRPC, latency and access logs off)
  MLServer         MLModel in benchmarks/peers/mlserver_onnx.py (parallel_workers 0: in-process,
                   no adaptive batching, debug (access log), gzip and metrics off: its fastest)

The peers live in their own virtual environments under --work-dir, made on the first run
(pip from PyPI, pins in benchmarks/peers/requirements-*.txt) and reused after.

One load generator drives them all: keep-alive HTTP/1.1 connections from this process, one
image per request, v2 REST JSON tensors and the binary tensor data extension, concurrency
1/8/32, --requests per cell after a warm-up. Every answer is checked against the same
image's output from onnxruntime in this process. A server that does not speak the binary
extension is listed as such (the benchmark asks it once and shows the answer it got).

A 2-core machine shared with other work gives noisy numbers, so each cell records the CPU
time that processes other than the server and the load generator used while it ran (from
/proc: the machine's busy time minus theirs). A cell in which that exceeds --max-other-cpu
(in cores, averaged over the cell) is run again, up to --tries times; the least disturbed
try is kept and marked '!' if still above the limit. Only the server being measured runs:
the others are stopped (SIGSTOP) and continued for their own cells. The servers take turns
cell by cell, --rounds times in a rotating order, and each keeps its best round (every
round's req/s is listed): a machine whose speed drifts (other virtual machines on the same
host, which /proc does not show) then slows them alike. The server's own CPU time per
request is listed too: it moves far less with such noise than req/s does.

    --quick: 100 requests per cell, concurrency 1 and 8, one round (a smoke test)
    --baseline REV: this service as of git revision REV as well (before and after, same run)
    --profile: afterwards, py-spy on this service during extra runs of its cells (where time goes)
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(__file__).resolve().parent / "peers"
MODEL_NAME, MODEL_VERSION = "pneumonia-xray", "2"
MODEL_DIR = REPO_ROOT / "models" / MODEL_NAME / MODEL_VERSION
DEFAULT_WORK_DIR = Path("/tmp/cxr-peer-bench")
PROTOCOLS = ("json", "binary")
HEADER_LENGTH = "inference-header-content-length"
DISTINCT_IMAGES = 16
TOLERANCE = 1e-5  # batched and single runs of the same image may differ in the last bits of float32
TARGETS = {1: 1.1, 8: 1.3, 32: 1.3}  # this service / the faster peer, by concurrency
P99_TARGET_MS = 20.0  # at concurrency 32


# -- /proc: CPU time ------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the machine spent on processes (user, nice, system) and lost to steal.

    Interrupt time is left out: loopback traffic between the measured processes is handled
    there, and the kernel charges it to no process.
    """
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + steal) / CLOCK_TICKS


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...


def process_tree(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def process_cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of these processes (all their threads)."""
    total = 0
    for pid in pids:
        if (fields := _stat_fields(pid)) is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


class CpuWatch:
    """CPU used during a span: by the measured processes, and by everything else on the machine."""

    def __init__(self, measured_roots: list[int]):
        self.roots = measured_roots

    def __enter__(self) -> CpuWatch:
        self.trees = [process_tree(root) for root in self.roots]
        self.started = time.perf_counter()
        self.busy0, self.each0 = machine_busy_seconds(), [process_cpu_seconds(tree) for tree in self.trees]
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
        self.busy = machine_busy_seconds() - self.busy0
        self.each = [process_cpu_seconds(tree) - before for tree, before in zip(self.trees, self.each0, strict=True)]
        self.ours = sum(self.each)

    @property
    def other_cores(self) -> float:
        """Average cores used by other processes (the clock ticks are 10 ms: small spans read coarse)."""
        return max(self.busy - self.ours, 0.0) / self.seconds


# -- the model and its reference answers ----------------------------------------------------


@dataclass
class Workload:
    images: list[np.ndarray]  # (1, H, W, 1) float32, 8-bit pixel values as a client sends them
    expected: list[np.ndarray]  # probabilities from onnxruntime in this process, one row each
    requests: dict[str, list[tuple[bytes, int | None]]]  # protocol -> (body, JSON header length) per image
    path: str = f"/v2/models/{MODEL_NAME}/infer"


def make_workload(model_path: Path, count: int = DISTINCT_IMAGES) -> Workload:
    import onnxruntime as ort
    from peers.onnx_session import session_options

    session = ort.InferenceSession(str(model_path), session_options(), providers=["CPUExecutionProvider"])
    shape = [1 if not isinstance(dim, int) or dim < 0 else dim for dim in session.get_inputs()[0].shape]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape).astype(np.float32) for _ in range(count)]
    expected = [session.run(["probabilities"], {"image": image})[0][0] for image in images]
    requests = {
        protocol: [request_body(image, protocol, f"image-{index}") for index, image in enumerate(images)]
        for protocol in PROTOCOLS
    }
    return Workload(images, expected, requests)


def request_body(image: np.ndarray, protocol: str, request_id: str) -> tuple[bytes, int | None]:
    """What v2 clients send (as tritonclient's and KServe's do: `tolist()` of the float32 pixels).

    With an id, which every server echoes: the same image gets the same answer, byte for byte.
    """
    tensor: dict = {"name": "image", "shape": list(image.shape), "datatype": "FP32"}
    if protocol == "json":
        tensor["data"] = image.ravel().tolist()
        return json.dumps({"id": request_id, "inputs": [tensor], "outputs": [{"name": "probabilities"}]}).encode(), None
    raw = image.astype("<f4").tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    outputs = [{"name": "probabilities", "parameters": {"binary_data": True}}]
    header = json.dumps({"id": request_id, "inputs": [tensor], "outputs": outputs}).encode()
    return header + raw, len(header)


def http_request(path: str, request: tuple[bytes, int | None]) -> bytes:
    body, header_length = request
    headers = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    if header_length is not None:
        headers += ["Content-Type: application/octet-stream", f"Inference-Header-Content-Length: {header_length}"]
    else:
        headers.append("Content-Type: application/json")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def _header(head: bytes, name: bytes) -> bytes | None:
    """A header's value in a lower-cased response head, or None."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    end = head.find(b"\r\n", start + 2)
    return head[start + len(name) + 3 : end if end >= 0 else len(head)].strip()


def probabilities_of(json_length: int | None, body: bytes) -> np.ndarray:
    """The `probabilities` output of a v2 answer, JSON or binary (a JSON header of `json_length` bytes)."""
    json_length = len(body) if json_length is None else json_length
    answer = json.loads(body[:json_length])
    offset = json_length
    for output in answer["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if output["name"] == "probabilities":
            if size is not None:
                return np.frombuffer(body[offset : offset + size], "<f4").reshape(output["shape"])[0]
            return np.asarray(output["data"], np.float32).reshape(output["shape"])[0]
        offset += size or 0
    raise ValueError(f"no probabilities in {answer}")


# -- the load generator ---------------------------------------------------------------------


class CellError(RuntimeError):
    pass


@dataclass
class Load:
    requests: list[bytes]  # whole HTTP requests, one per distinct image
    expected: list[np.ndarray]
    remaining: int
    latencies: list[float] = field(default_factory=list)
    max_difference: float = 0.0
    error: str | None = None
    checked: list[set] = field(default_factory=list)  # per image: answers found right (header length, body)

    def __post_init__(self) -> None:
        self.checked = [set() for _ in self.requests]


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending the next request as soon as the previous answer is in.

    Lean on purpose (it shares the machine with the server it measures): an answer byte-equal
    to one already checked for the same image is not parsed again.
    """

    def __init__(self, load: Load, first_image: int, done: asyncio.Future):
        self.load, self.image, self.done = load, first_image, done
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        load = self.load
        if load.remaining <= 0 or load.error is not None:
            self._finish()
            return
        load.remaining -= 1
        self.image = (self.image + 1) % len(load.requests)
        self.started = time.perf_counter()
        assert self.transport is not None
        self.transport.write(load.requests[self.image])

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        length = _header(head, b"content-length")
        if length is not None:
            total = end + 4 + int(length)
            if len(buffer) < total:
                return
            body = bytes(buffer[end + 4 : total])
        elif _header(head, b"transfer-encoding") == b"chunked":
            if (chunked := _chunked_body(buffer, end + 4)) is None:
                return
            body, total = chunked
        else:
            self._fail(f"an answer with neither Content-Length nor chunks: {head!r}")
            return
        elapsed = time.perf_counter() - self.started
        del buffer[:total]
        if not head.startswith(b"http/1.1 200 "):
            self._fail(f"HTTP {head[9:12].decode()}: {body[:200]!r}")
            return
        answer = (_header(head, HEADER_LENGTH.encode()), body)
        if answer not in self.load.checked[self.image] and not self._check(answer):
            return
        self.load.latencies.append(elapsed)
        self._send()

    def _check(self, answer: tuple[bytes | None, bytes]) -> bool:
        header_length, body = answer
        try:
            found = probabilities_of(None if header_length is None else int(header_length), body)
            difference = float(np.max(np.abs(found - self.load.expected[self.image])))
        except (ValueError, KeyError, TypeError) as exc:
            self._fail(f"an answer that is not a v2 inference response ({exc}): {body[:300]!r}")
            return False
        if not difference <= TOLERANCE:
            self._fail(f"a wrong answer: {difference} from onnxruntime in-process")
            return False
        self.load.max_difference = max(self.load.max_difference, difference)
        self.load.checked[self.image].add(answer)
        return True

    def _fail(self, message: str) -> None:
        self.load.error = self.load.error or message
        self._finish()

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.load.error = self.load.error or f"the server closed the connection ({exc})"
            self.done.set_result(None)


def _chunked_body(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body's bytes and where it ends in `buffer`, or None while it is incomplete."""
    chunks, position = [], start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        if size == 0:
            return (b"".join(chunks), line_end + 4) if len(buffer) >= line_end + 4 else None
        if len(buffer) < line_end + 2 + size + 2:
            return None
        chunks.append(bytes(buffer[line_end + 2 : line_end + 2 + size]))
        position = line_end + 2 + size + 2


async def _drive(port: int, load: Load, concurrency: int) -> float:
    loop = asyncio.get_running_loop()
    done = [loop.create_future() for _ in range(concurrency)]
    started = time.perf_counter()
    for index, future in enumerate(done):
        await loop.create_connection(lambda f=future, i=index: _Connection(load, i, f), "127.0.0.1", port)
    await asyncio.wait_for(asyncio.gather(*done), timeout=600)
    return time.perf_counter() - started


def run_load(port: int, load: Load, concurrency: int) -> float:
    try:
        import uvloop

        return uvloop.run(_drive(port, load, concurrency))
    except ImportError:
        return asyncio.run(_drive(port, load, concurrency))


# -- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@dataclass
class Server:
    key: str
    title: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    process: subprocess.Popen | None = None
    binary: str | None = None  # why the binary extension is unsupported, if it is

    def start(self, timeout: float = 180.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.args, env={**os.environ, **self.env}, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/v2/models/{MODEL_NAME}/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.title} exited with {self.process.returncode}; see {self.log_path}")
            if http_get(url) == 200:
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.title} was not ready within {timeout} s; see {self.log_path}")

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signum)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()

    def log_lines(self) -> int:
        return sum(1 for _ in self.log_path.open("rb"))


def ours_server(work: Path, key: str, title: str, source: Path | None = None) -> Server:
    """The inference service from .venv; from `source` (a `git archive` of a revision) if given."""
    repository = work / "repository"  # this model only, as the peers serve (copied by `run`)
    port = free_port()
    env = {
        "INFERENCE_MODEL_REPOSITORY": str(repository),
        "INFERENCE_INTRA_OP_THREADS": "1",
        "INFERENCE_INTER_OP_THREADS": "1",
    }
    if source is not None:  # ahead of the editable installs of the working tree
        env["PYTHONPATH"] = os.pathsep.join([str(source / "services" / "inference"), str(source / "cxr_model")])
    args = [sys.executable, "-m", "uvicorn", "inference.app:create_app", "--factory", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--no-access-log"]  # as scripts/processes.py starts it
    return Server(key, title, args, env, work / "logs" / f"{key}.log", port)


def kserve_server(work: Path, python: Path) -> Server:
    port = free_port()
    args = [str(python), str(PEERS_DIR / "kserve_onnx.py"), "--model_name", MODEL_NAME]
    args += ["--model_path", str(MODEL_DIR / "model.onnx"), "--http_port", str(port), "--grpc_port", str(free_port())]
    args += ["--workers", "1", "--enable_grpc", "false", "--enable_latency_logging", "false"]
    title = f"KServe {peer_version(python, 'kserve')}"
    return Server("kserve", title, args, {}, work / "logs" / "kserve.log", port)


def mlserver_server(work: Path, python: Path) -> Server:
    folder = work / "mlserver-models"
    (folder / MODEL_NAME).mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "metrics_endpoint": None,
        "parallel_workers": 0,
        "debug": False,
        "gzip_enabled": False,
        "load_models_at_startup": True,
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_onnx.OnnxRuntime",
        "max_batch_size": 0,
        "parameters": {"uri": str(MODEL_DIR / "model.onnx"), "version": MODEL_VERSION, "extra": {"threads": 1}},
    }
    (folder / MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    args = [str(python.parent / "mlserver"), "start", str(folder)]
    env = {"PYTHONPATH": str(PEERS_DIR)}
    title = f"MLServer {peer_version(python, 'mlserver')}"
    return Server("mlserver", title, args, env, work / "logs" / "mlserver.log", port)


# -- virtual environments of the peers --------------------------------------------------------


def ensure_venv(work: Path, name: str, requirements: Path, log: Callable[[str], None] = print) -> Path:
    """A virtual environment under work/venvs/name with `requirements` installed; its python.

    Made once and reused while the requirements file stays the same (a stamp holds its hash);
    a lock file lets concurrent runs (the benchmark, a test) share it.
    """
    venv = work / "venvs" / name
    venv.parent.mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    digest = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:16]
    stamp = venv / f".installed-{digest}"
    with open(venv.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and python.exists():
            return python
        log(f"making the {name} environment in {venv} (pip install -r {requirements.relative_to(REPO_ROOT)})")
        shutil.rmtree(venv, ignore_errors=True)
        base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
        completed = subprocess.run([*pip, "-r", str(requirements)], capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"installing {requirements} failed:\n{completed.stdout}\n{completed.stderr}")
        stamp.touch()
    return python


def peer_version(python: Path, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def export_revision(work: Path, revision: str) -> Path:
    """The inference service and the model contract as they were at `revision` (git archive: no checkout)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    target = work / "revisions" / commit
    if not (target / "services" / "inference" / "inference").is_dir():
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "services/inference", "cxr_model"], cwd=REPO_ROOT,
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    return target


# -- cells ------------------------------------------------------------------------------------


@dataclass
class Cell:
    server: str
    protocol: str
    concurrency: int
    per_second: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    other_cores: float = 0.0
    tries: int = 0
    disturbed: bool = False
    max_difference: float = 0.0
    unsupported: str | None = None
    log_lines_per_request: float | None = None
    server_cpu_us: float = 0.0  # the server's CPU time per request: steadier than req/s on a busy machine
    rounds: list[int] = field(default_factory=list)  # req/s of every round (the cell is the best one)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def measure_cell(
    server: Server, workload: Workload, protocol: str, concurrency: int, options: argparse.Namespace
) -> Cell:
    requests = [http_request(workload.path, request) for request in workload.requests[protocol]]
    best: Cell | None = None
    for attempt in range(1, options.tries + 1):
        warm_up = Load(requests, workload.expected, max(options.warm_up, 2 * concurrency))
        run_load(server.port, warm_up, concurrency)
        if warm_up.error:
            raise CellError(warm_up.error)
        lines_before = server.log_lines()
        load = Load(requests, workload.expected, max(options.requests, concurrency))
        assert server.process is not None
        with CpuWatch([server.process.pid, os.getpid()]) as watch:
            elapsed = run_load(server.port, load, concurrency)
        if load.error:
            raise CellError(load.error)
        cell = Cell(
            server.key, protocol, concurrency,
            per_second=len(load.latencies) / elapsed,
            p50_ms=percentile(load.latencies, 50) * 1000,
            p99_ms=percentile(load.latencies, 99) * 1000,
            other_cores=watch.other_cores,
            tries=attempt,
            max_difference=load.max_difference,
            log_lines_per_request=(server.log_lines() - lines_before) / len(load.latencies),
            server_cpu_us=watch.each[0] / len(load.latencies) * 1e6,
        )  # fmt: skip
        cell.disturbed = cell.other_cores > options.max_other_cpu
        if best is None or cell.other_cores < best.other_cores:
            best = cell
        best.tries = attempt
        if not cell.disturbed:
            break
        time.sleep(options.settle)  # let the other work pass
    assert best is not None
    return best


def probe_binary(server: Server, workload: Workload) -> str | None:
    """None when the server answers a binary-extension request correctly; else what it answered."""
    request = http_request(workload.path, workload.requests["binary"][0])
    load = Load([request], workload.expected[:1], 1)
    run_load(server.port, load, 1)
    return None if load.error is None else load.error[:60]


def measure_in_process(workload: Workload, count: int) -> tuple[float, float]:
    """onnxruntime in this process, one image per call: calls/s and the cores others used meanwhile."""
    import onnxruntime as ort
    from peers.onnx_session import session_options

    session = ort.InferenceSession(str(MODEL_DIR / "model.onnx"), session_options(), providers=["CPUExecutionProvider"])
    feeds = [{"image": image} for image in workload.images]
    for index in range(200):
        session.run(["probabilities"], feeds[index % len(feeds)])
    with CpuWatch([os.getpid()]) as watch:
        for index in range(count):
            session.run(["probabilities"], feeds[index % len(feeds)])
    return count / watch.seconds, watch.other_cores


# -- the run ----------------------------------------------------------------------------------


def run(options: argparse.Namespace) -> list[Cell]:
    work: Path = options.work_dir
    work.mkdir(parents=True, exist_ok=True)
    workload = make_workload(MODEL_DIR / "model.onnx")
    shutil.rmtree(work / "repository", ignore_errors=True)  # this service's repository: the model, afresh
    shutil.copytree(MODEL_DIR, work / "repository" / MODEL_NAME / MODEL_VERSION)
    servers: list[Server] = []
    if "ours" in options.servers:
        servers.append(ours_server(work, "ours", "this service"))
    if options.baseline:
        source = export_revision(work, options.baseline)
        servers.append(ours_server(work, "baseline", f"this service @{source.name}", source))
    if "kserve" in options.servers:
        servers.append(kserve_server(work, ensure_venv(work, "kserve", PEERS_DIR / "requirements-kserve.txt")))
    if "mlserver" in options.servers:
        servers.append(mlserver_server(work, ensure_venv(work, "mlserver", PEERS_DIR / "requirements-mlserver.txt")))
    cells: list[Cell] = []
    try:
        for server in servers:
            print(f"starting {server.title} on port {server.port}", file=sys.stderr)
            server.start()
            server.binary = probe_binary(server, workload)
            server.signal(signal.SIGSTOP)
        ceiling = measure_in_process(workload, options.requests)
        for protocol in options.protocols:
            for concurrency in options.concurrency:
                cells += measure_rounds(servers, workload, protocol, concurrency, options)
        if options.profile:
            profile_ours(servers, workload, options)
    finally:
        for server in servers:
            server.stop()
    print_table(cells, servers, ceiling, options)
    if options.json_out:
        options.json_out.write_text(json.dumps([cell.__dict__ for cell in cells], indent=1))
    return cells


def measure_rounds(
    servers: list[Server], workload: Workload, protocol: str, concurrency: int, options: argparse.Namespace
) -> list[Cell]:
    """Each server's cell `options.rounds` times, the servers taking turns (in a rotating order);
    each server's best round is kept, with every round's req/s beside it."""
    runs: dict[str, list[Cell]] = {server.key: [] for server in servers}
    for round_index in range(options.rounds):
        turn = round_index % len(servers)
        for server in servers[turn:] + servers[:turn]:
            if protocol == "binary" and server.binary is not None:
                continue
            server.signal(signal.SIGCONT)
            try:
                cell = measure_cell(server, workload, protocol, concurrency, options)
            finally:
                server.signal(signal.SIGSTOP)
            runs[server.key].append(cell)
            print(
                f"  {protocol:<6} c={concurrency:<2} round {round_index + 1} {server.title:<24} "
                f"{cell.per_second:6.0f} req/s  p50 {cell.p50_ms:6.2f}  p99 {cell.p99_ms:6.2f} ms  "
                f"server CPU {cell.server_cpu_us:4.0f} us/req  others {cell.other_cores:.2f} cores (try {cell.tries})",
                file=sys.stderr,
            )
    cells = []
    for server in servers:
        if protocol == "binary" and server.binary is not None:
            cells.append(Cell(server.key, protocol, concurrency, unsupported=server.binary))
            continue
        best = max(runs[server.key], key=lambda cell: cell.per_second)
        best.rounds = [round(cell.per_second) for cell in runs[server.key]]
        cells.append(best)
    return cells


def print_table(cells: list[Cell], servers: list[Server], ceiling: tuple[float, float], options) -> None:
    titles = {server.key: server.title for server in servers}
    peers = [server.key for server in servers if server.key in ("kserve", "mlserver")]
    by_key = {(cell.server, cell.protocol, cell.concurrency): cell for cell in cells}

    def faster_peer(protocol: str, concurrency: int) -> Cell | None:
        measured = [by_key.get((peer, protocol, concurrency)) for peer in peers]
        return max((c for c in measured if c and c.unsupported is None), key=lambda c: c.per_second, default=None)

    print(f"\n## Peer benchmark: {MODEL_NAME} v{MODEL_VERSION}, one image per request\n")
    print(
        f"{options.requests} requests per cell after {options.warm_up} of warm-up, best of {options.rounds} rounds "
        f"(servers taking turns); onnxruntime {onnxruntime_version()}, intra_op = inter_op = 1 in every server; "
        f"onnxruntime in-process, one image per call: {ceiling[0]:.0f} calls/s.\n"
    )
    columns = ["protocol", "conc.", "server", "req/s", "p50 ms", "p99 ms", "vs faster peer"]
    columns += ["vs baseline"] if options.baseline else []
    columns += ["server CPU us/req", "rounds req/s", "other CPU (cores)"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for protocol in options.protocols:
        for concurrency in options.concurrency:
            faster, baseline = faster_peer(protocol, concurrency), by_key.get(("baseline", protocol, concurrency))
            for server in servers:
                cell = by_key[(server.key, protocol, concurrency)]
                row = [protocol, str(concurrency), titles[cell.server]]
                if cell.unsupported is not None:
                    row += [f"not supported ({cell.unsupported})"] + [""] * (len(columns) - 4)
                    print("| " + " | ".join(row) + " |")
                    continue
                versus_peer = versus_baseline = ""
                if cell.server == "ours" and faster is not None:
                    versus_peer = f"{cell.per_second / faster.per_second:.2f}x {titles[faster.server].split()[0]}"
                if cell.server == "ours" and baseline is not None and baseline.unsupported is None:
                    versus_baseline = f"{cell.per_second / baseline.per_second:.2f}x"
                row += [f"{cell.per_second:.0f}", f"{cell.p50_ms:.2f}", f"{cell.p99_ms:.2f}", versus_peer]
                row += [versus_baseline] if options.baseline else []
                other = f"{cell.other_cores:.2f}{' !' if cell.disturbed else ''} (try {cell.tries})"
                row += [f"{cell.server_cpu_us:.0f}", "/".join(str(value) for value in cell.rounds), other]
                print("| " + " | ".join(row) + " |")
    measured = [cell for cell in cells if cell.unsupported is None]
    worst = max((cell.max_difference for cell in measured), default=0.0)
    print(
        f"\nEvery answer checked against onnxruntime in-process: largest difference {worst:.1e} (limit {TOLERANCE:g})."
    )
    print(
        f"other CPU: cores that other processes used while the cell ran (from /proc); a cell above "
        f"{options.max_other_cpu} is run again, up to {options.tries} tries, and '!' marks one still above."
    )
    lines = {
        titles[key]: max(cell.log_lines_per_request or 0 for cell in measured if cell.server == key)
        for key in titles
        if any(cell.server == key for cell in measured)
    }
    print("log lines per request: " + ", ".join(f"{title} {value:.2f}" for title, value in lines.items()))
    if any(cell.unsupported for cell in cells):
        print("not supported: the server's answer to one request in the binary tensor data extension.")
    if not peers or "ours" not in titles:
        return
    print("targets (this service vs the faster peer):")
    for protocol in options.protocols:
        for concurrency in options.concurrency:
            ours, faster = by_key.get(("ours", protocol, concurrency)), faster_peer(protocol, concurrency)
            if ours is None or faster is None:
                continue
            ratio, target = ours.per_second / faster.per_second, TARGETS.get(concurrency)
            verdict = "" if target is None else f" (target >= {target}x: {'met' if ratio >= target else 'NOT met'})"
            p99 = ""
            if concurrency == 32:
                met = "met" if ours.p99_ms <= P99_TARGET_MS else "NOT met"
                p99 = f"; p99 {ours.p99_ms:.1f} ms (target <= {P99_TARGET_MS:g} ms: {met})"
            print(f"  {protocol:<6} c={concurrency:<2} {ratio:.2f}x {titles[faster.server]}{verdict}{p99}")


def onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


# -- profile ----------------------------------------------------------------------------------


def profile_ours(servers: list[Server], workload: Workload, options: argparse.Namespace) -> None:
    """py-spy on this service during extra runs of its cells (not the measured ones): where time goes."""
    python = ensure_venv(options.work_dir, "tools", PEERS_DIR / "requirements-tools.txt")
    py_spy = python.parent / "py-spy"
    out_dir = options.work_dir / "profiles"
    out_dir.mkdir(exist_ok=True)
    for server in servers:
        if server.key not in ("ours", "baseline"):
            continue
        server.signal(signal.SIGCONT)
        try:
            for protocol in options.protocols:
                for concurrency in options.concurrency:
                    stem = out_dir / f"{server.key}-{protocol}-c{concurrency}"
                    assert server.process is not None
                    recorder = subprocess.Popen(
                        [str(py_spy), "record", "--pid", str(server.process.pid), "--rate", "250", "--format", "raw",
                         "--threads", "--nonblocking", "--output", f"{stem}.txt"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    time.sleep(1.0)
                    requests = [http_request(workload.path, request) for request in workload.requests[protocol]]
                    run_load(server.port, Load(requests, workload.expected, options.requests * 2), concurrency)
                    recorder.send_signal(signal.SIGINT)
                    recorder.wait(timeout=60)
                    print(f"\n### py-spy: {server.title}, {protocol}, c={concurrency} ({stem}.txt)")
                    print(summarize_profile(Path(f"{stem}.txt")))
        finally:
            server.signal(signal.SIGSTOP)


_WAITING = ("Condition.wait (", "_worker (concurrent/futures/thread.py:8", "Event.wait (", "select (", "poll (")


def summarize_profile(path: Path, top: int = 30) -> str:
    """Where the busy samples are, from py-spy's collapsed stacks (--threads): per thread, and by the
    function on top of the stack (own time). Threads waiting for work are left out; `Runner.run` is
    the event loop's own work in C (uvloop: sockets, callbacks, task switches)."""
    if not path.exists():
        return "(no profile written)"
    own: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not count_text.isdigit() or len(frames) < 2 or frames[-1].startswith(_WAITING):
            continue
        count = int(count_text)
        total += count
        thread = frames[0].split(": ", 1)[-1]
        threads[thread] = threads.get(thread, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    if total == 0:
        return "(no busy samples)"
    rows = [
        "busy samples: " + ", ".join(f"{name} {count}" for name, count in sorted(threads.items(), key=lambda t: -t[1]))
    ]
    rows.append(" own %  function")
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        rows.append(f"{100 * count / total:6.1f}  {frame}")
    return "\n".join(rows)


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per cell (default 2000)")
    parser.add_argument("--concurrency", default="1,8,32", help="connections, comma-separated (default 1,8,32)")
    parser.add_argument("--protocols", default="json,binary", help="json and/or binary (default both)")
    parser.add_argument("--servers", default="ours,kserve,mlserver", help="which of ours,kserve,mlserver (default all)")
    parser.add_argument("--baseline", metavar="REVISION", help="also run this service as of a git revision (e.g. HEAD)")
    parser.add_argument(
        "--work-dir", type=Path, default=DEFAULT_WORK_DIR, help=f"venvs, logs (default {DEFAULT_WORK_DIR})"
    )
    parser.add_argument("--max-other-cpu", type=float, default=0.05, help="cores others may use before a redo")
    parser.add_argument("--tries", type=int, default=4, help="runs of a disturbed cell at most (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every cell, best kept (default 3)")
    parser.add_argument("--warm-up", type=int, default=200, help="requests before each measured cell")
    parser.add_argument("--profile", action="store_true", help="then py-spy this service's cells (extra runs)")
    parser.add_argument("--json-out", type=Path, help="also write the cells as JSON here")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 requests per cell, 1 round, c=1,8")
    options = parser.parse_args(argv)
    if options.quick:
        options.requests, options.warm_up, options.tries, options.rounds = min(options.requests, 100), 20, 1, 1
        if options.concurrency == "1,8,32":
            options.concurrency = "1,8"
    options.concurrency = [int(value) for value in str(options.concurrency).split(",")]
    options.protocols = [value for value in options.protocols.split(",") if value]
    options.servers = [value for value in options.servers.split(",") if value]
    unknown = set(options.protocols) - set(PROTOCOLS) | set(options.servers) - {"ours", "kserve", "mlserver"}
    if unknown:
        parser.error(f"unknown: {sorted(unknown)}")
    options.settle = 0.5 if options.quick else 2.0
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        run(options)
    except CellError as exc:
        print(f"a server gave a wrong or failed answer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
