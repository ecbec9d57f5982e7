"""POST /classify through the whole gateway (Postgres, S3 over HTTP, inference) beside the
inference service's own image call, at several concurrencies; then rows vs objects.

    .venv/bin/python benchmarks/gateway_benchmark.py [--requests 48] [--concurrency 1 8 32]
        [--image FILE] [--model NAME] [--profile]

The image (default: a pediatric chest X-ray JPEG from the samples) goes where the intended-use gate sends it,
or to --model; the inference column is that model's own image call.

Starts every service as a local process exactly as the test suite does (a throw-away
database on the Postgres at TEST_POSTGRES_DSN, moto's S3 server, the committed model) and
prints one table. Rate limiting is turned off for the run.

--profile: afterwards, py-spy on the gateway during an extra run of each cell (not a measured one),
sampling the thread that holds the GIL (Python's own CPU time, not waits), and where those samples
went: by the innermost gateway function on the stack (the library under it named), or by library
where no gateway code is on the stack (the framework's share).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "scripts"), str(REPO_ROOT / "tests"), str(REPO_ROOT / "benchmarks")]

from peer_benchmark import DEFAULT_WORK_DIR, PEERS_DIR, ensure_venv  # noqa: E402
from processes import (  # noqa: E402
    ServiceProcess,
    free_port,
    gateway_process,
    inference_process,
    run_prestart,
    s3_process,
)
from reliability.reconcile import reconcile  # noqa: E402
from support import POSTGRES_ADMIN_DSN, login, throwaway_database  # noqa: E402

DATA_DIR = REPO_ROOT.parent / "shared" / "data"
BUCKET = "cxr-benchmark"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> dict[int, float]:
    """CPU time of each postgres process on the machine (the server and its backends), by pid."""
    found = {}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                found[int(comm.parent.name)] = process_cpu_seconds(int(comm.parent.name))
        except (OSError, ValueError):  # the process ended meanwhile
            continue
    return found


def _postgres_spent(started: dict[int, float], ended: dict[int, float]) -> float:
    """Seconds spent by postgres processes alive at the end (a backend that exited meanwhile is not counted)."""
    return sum(seconds - started.get(pid, 0.0) for pid, seconds in ended.items())


def machine_times() -> tuple[int, int]:
    """(all, idle) jiffies of the whole machine, from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]


class CpuMeter:
    """CPU milliseconds per request of each process of the stack, and how busy the machine was, over one cell."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids

    def _processes(self) -> dict[str, float]:
        return {name: process_cpu_seconds(pid) for name, pid in self.pids.items()} | {
            "load generator": sum(os.times()[:2])
        }

    def __enter__(self):
        self.started, self.postgres_started = self._processes(), postgres_cpu_seconds()
        self.machine_started = machine_times()
        return self

    def __exit__(self, *exc_info):
        self.ended, self.postgres_ended = self._processes(), postgres_cpu_seconds()
        self.machine_ended = machine_times()

    def per_request_ms(self, requests: int) -> dict[str, float]:
        spent = {name: self.ended[name] - self.started[name] for name in self.started}
        spent["postgres"] = _postgres_spent(self.postgres_started, self.postgres_ended)
        return {name: seconds * 1000 / requests for name, seconds in spent.items()}

    def machine_busy(self) -> float:
        (total_0, idle_0), (total_1, idle_1) = self.machine_started, self.machine_ended
        return 1 - (idle_1 - idle_0) / max(1, total_1 - total_0)


def measure(send, requests: int, concurrency: int) -> tuple[float, float, float]:
    """(requests per second, p50 ms, p99 ms) of `requests` calls of send() from `concurrency` threads."""

    def timed(_):
        started = time.perf_counter()
        send()
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(pool.map(timed, range(requests)))
    elapsed = time.perf_counter() - started
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return requests / elapsed, statistics.median(latencies), p99


def checked(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.url} answered {response.status_code}: {response.text[:300]}")


def table_row(*cells) -> str:
    widths = (11, 13, 8, 8, 15, 8, 8)
    texts = [f"{c:>{w}.1f}" if isinstance(c, float) else f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)]
    return f"{texts[0]} | {' '.join(texts[1:4])} | {' '.join(texts[4:])}"


@contextmanager
def running_services(logs: Path, models_dir: Path = REPO_ROOT / "models"):
    """moto S3, the inference service and a migrated gateway on a throw-away database.

    Yields the gateway's env and the pid of each service process.
    """
    s3_port, inference_port, gateway_port = free_port(), free_port(), free_port()
    s3 = s3_process(s3_port, logs / "s3.log")
    models = {"INFERENCE_MODEL_REPOSITORY": str(models_dir)}
    inference = inference_process(inference_port, models, logs / "inference.log")
    started: list[ServiceProcess] = []
    with throwaway_database(POSTGRES_ADMIN_DSN, "cxr_benchmark") as database_url:
        try:
            started += [s3.start(), inference.start()]
            env = {
                "ENVIRONMENT": "production",
                "DATABASE_URL": database_url,
                "JWT_SECRET": uuid.uuid4().hex * 2,
                "DEIDENTIFICATION_UID_SECRET": uuid.uuid4().hex * 2,
                "INFERENCE_URL": f"http://127.0.0.1:{inference_port}",
                "S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
                "S3_BUCKET": BUCKET,
                "S3_ACCESS_KEY_ID": "benchmark",
                "S3_SECRET_ACCESS_KEY": "benchmark",
                "FIRST_ADMIN_USERNAME": "admin",
                "FIRST_ADMIN_PASSWORD": "admin-" + uuid.uuid4().hex,
                "RATE_LIMIT_PER_MINUTE": "0",
                "GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
            }
            run_prestart(env)
            started.append(gateway_process(gateway_port, env, logs / "gateway.log").start())
            yield env, {service.name: service.process.pid for service in started}
        finally:
            for service in reversed(started):
                service.stop()


_IDLE_FRAMES = ("Condition.wait (", "_worker (concurrent/futures/thread.py", "Event.wait (", "select (", "poll (")


def _frame_parts(frame: str) -> tuple[str, str]:
    """(function, file path) of one py-spy frame `function (path:line)`."""
    function, _, location = frame.rpartition(" (")
    return function, location.rsplit(":", 1)[0]


def _library(path: str) -> str:
    """The top-level package or standard-library module a file belongs to."""
    parts = Path(path).parts
    for marker in ("site-packages", "python3.11"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1].removesuffix(".py")
    return Path(path).stem


def summarize_by_gateway_function(path: Path, top: int = 25) -> str:
    """Busy samples of py-spy's collapsed stacks, each charged to the innermost gateway function on its stack
    (with the library its time went to), or, without gateway code on the stack, to the library on top."""
    charged: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines() if path.exists() else []:
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")[1:]  # the first is the thread
        if not count_text.isdigit() or not frames or frames[-1].startswith(_IDLE_FRAMES):
            continue
        leaf_library = _library(_frame_parts(frames[-1])[1])
        ours = [part for part in map(_frame_parts, frames) if "/gateway/" in part[1]]
        if ours:
            function, file = ours[-1]
            key = f"gateway.{Path(file).stem}.{function.rsplit('.', 1)[-1]} -> {leaf_library}"
        else:
            key = f"(no gateway code) {leaf_library}"
        charged[key] = charged.get(key, 0) + int(count_text)
        total += int(count_text)
    if total == 0:
        return "(no busy samples)"
    rows = [f"busy samples: {total}", "    %  charged to"]
    rows += [f"{100 * n / total:5.1f}  {key}" for key, n in sorted(charged.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(rows)


def profile_cells(gateway_pid: int, send, requests: int, concurrencies: list[int]) -> None:
    """py-spy on the gateway during an extra run of each cell, then where its busy samples went."""
    py_spy = ensure_venv(DEFAULT_WORK_DIR, "tools", PEERS_DIR / "requirements-tools.txt").parent / "py-spy"
    out_dir = Path(tempfile.mkdtemp(prefix="cxr-gateway-profile-"))
    for concurrency in concurrencies:
        output = out_dir / f"gateway-c{concurrency}.txt"
        recorder = subprocess.Popen(
            [str(py_spy), "record", "--pid", str(gateway_pid), "--rate", "500", "--format", "raw", "--gil",
             "--threads", "--full-filenames", "--nonblocking", "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)
        measure(send, requests, concurrency)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
        print(f"\n### py-spy: gateway, c={concurrency} ({output})")
        print(summarize_by_gateway_function(output))


def run(
    requests: int, concurrencies: list[int], image_path: Path, model: str | None, models_dir: Path, profile: bool
) -> None:
    import boto3

    image = image_path.read_bytes()
    fields = {"model": model} if model else {}
    logs = Path(tempfile.mkdtemp(prefix="cxr-benchmark-"))
    with running_services(logs, models_dir) as (env, pids):
        token = login(env["GATEWAY_URL"], "admin", env["FIRST_ADMIN_PASSWORD"])
        limits = httpx.Limits(max_connections=max(concurrencies))
        auth = {"Authorization": f"Bearer {token}"}
        with (
            httpx.Client(base_url=env["GATEWAY_URL"], headers=auth, timeout=120, limits=limits) as gateway,
            httpx.Client(base_url=env["INFERENCE_URL"], timeout=120, limits=limits) as direct,
        ):
            timings: list[dict[str, float]] = []  # the gateway's own account of each classification

            def via_gateway() -> str:
                response = gateway.post("/classify", files={"file": (image_path.name, image)}, data=fields)
                checked(response, 201)
                timings.append(response.json()["timings"])
                return response.json()["model_name"]

            answering = via_gateway()  # warm-up: models loaded, connections open

            def direct_inference():
                headers = {"Content-Type": "application/octet-stream"}
                checked(direct.post(f"/v2/models/{answering}/classify", content=image, headers=headers), 200)

            direct_inference()
            print(
                f"{requests} requests per cell; {image_path.name} ({len(image)} bytes) -> {answering}; logs in {logs}\n"
            )
            print(table_row("concurrency", "gateway req/s", "p50 ms", "p99 ms", "inference req/s", "p50 ms", "p99 ms"))
            print("-" * 84)
            cpu_by_concurrency, parts_by_concurrency = {}, {}
            for concurrency in concurrencies:
                timings.clear()
                with CpuMeter(pids) as cpu:
                    through_gateway = measure(via_gateway, requests, concurrency)
                cpu_by_concurrency[concurrency] = cpu
                parts_by_concurrency[concurrency] = {
                    name: statistics.median(t[name] for t in timings if t.get(name) is not None)
                    for name in timings[0]
                    if any(t.get(name) is not None for t in timings)
                }
                print(table_row(concurrency, *through_gateway, *measure(direct_inference, requests, concurrency)))
            print_cpu_table(cpu_by_concurrency, requests)
            print_parts_table(parts_by_concurrency)
            if profile:
                profile_cells(pids["gateway"], via_gateway, requests, concurrencies)
        s3_client = boto3.client(
            "s3",
            endpoint_url=env["S3_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="benchmark",
            aws_secret_access_key="benchmark",
        )
        found = reconcile(env["DATABASE_URL"].replace("postgresql+psycopg", "postgresql"), s3_client, BUCKET)
        print(f"\nreconciliation: {found.summary()}")


def print_cpu_table(cpu_by_concurrency: dict[int, CpuMeter], requests: int) -> None:
    """Where the CPU of the gateway cells went: ms per classification by process, and the machine's load."""
    names = list(next(iter(cpu_by_concurrency.values())).per_request_ms(requests))
    print(f"\nCPU ms per classification (gateway cells), {os.cpu_count()} cores")
    print(" | ".join(["concurrency", *(f"{name:>5}" for name in names), "machine busy"]))
    for concurrency, cpu in cpu_by_concurrency.items():
        spent = cpu.per_request_ms(requests)
        cells = [f"{concurrency:>11}", *(f"{spent[name]:>{max(len(name), 5)}.1f}" for name in names)]
        print(" | ".join([*cells, f"{cpu.machine_busy():>11.0%}"]))


def print_parts_table(parts_by_concurrency: dict[int, dict[str, float]]) -> None:
    """p50 of each part of a classification as the gateway times it (`timings` of the answer): `gate_ms` is the
    intended-use check, `inference_ms` the one inference call (the image-kind model and the classifier)."""
    names = list(next(iter(parts_by_concurrency.values())))
    print("\np50 ms of each part of POST /classify (the answer's timings)")
    print(" | ".join(["concurrency", *(f"{name:>12}" for name in names)]))
    for concurrency, parts in parts_by_concurrency.items():
        print(" | ".join([f"{concurrency:>11}", *(f"{parts.get(name, float('nan')):>12.1f}" for name in names)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level and target")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--image", type=Path, default=sorted((DATA_DIR / "samples" / "normal").glob("*.jp*g"))[0])
    parser.add_argument("--model", help="the model to ask for (default: the one the intended-use gate picks)")
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models", help="the model repository to serve")
    parser.add_argument("--profile", action="store_true", help="then py-spy the gateway during extra runs")
    arguments = parser.parse_args()
    run(
        arguments.requests, arguments.concurrency, arguments.image, arguments.model, arguments.models, arguments.profile
    )


if __name__ == "__main__":
    main()
