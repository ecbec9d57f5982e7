"""Fault driver: take one dependency away while load runs, bring it back, and measure what callers saw.

The faults: the object store stopped (its relay; moto keeps the objects), the database stopped
(`pg_ctl stop -m fast`, then started), the inference service killed with SIGKILL and started
again on the same port. The gateway is never restarted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from reliability.load import LoadReport, run_load
from reliability.stack import Stack

RECOVERY_LIMIT_SECONDS = 60.0


def stop_storage(stack: Stack) -> None:
    stack.relay.stop()


def start_storage(stack: Stack) -> None:
    stack.relay.start()


def stop_database(stack: Stack) -> None:
    stack.postgres.stop()


def start_database(stack: Stack) -> None:
    stack.postgres.start()


def kill_inference(stack: Stack) -> None:
    stack.inference.kill()


def start_inference(stack: Stack) -> None:
    stack.inference.start()


@dataclass(frozen=True)
class Fault:
    name: str
    check: str  # the /readyz check that must report it
    stop: Callable[[Stack], None]
    start: Callable[[Stack], None]


FAULTS = {
    fault.check: fault
    for fault in (
        Fault("object store stopped", "storage", stop_storage, start_storage),
        Fault("database stopped", "database", stop_database, start_database),
        Fault("inference killed (SIGKILL)", "inference", kill_inference, start_inference),
    )
}


@dataclass
class FaultReport:
    name: str
    load: LoadReport
    down_at: float = 0.0
    back_at: float = 0.0  # the dependency answers again
    recovered_at: float | None = None  # the first 2xx finished after back_at
    readiness_status: int = 0
    readiness_checks: dict = field(default_factory=dict)

    @property
    def recovery_seconds(self) -> float | None:
        return None if self.recovered_at is None else round(self.recovered_at - self.back_at, 2)

    def during_outage(self) -> list:
        return [o for o in self.load.outcomes if o.finished >= self.down_at and o.started <= self.back_at]

    def summary(self) -> dict:
        unavailable = [o for o in self.load.outcomes if o.status == 503]
        return {
            "fault": self.name,
            "outage_seconds": round(self.back_at - self.down_at, 2),
            "requests": len(self.load.outcomes),
            "statuses": self.load.summary()["statuses"],
            "error_codes": self.load.summary()["error_codes"],
            "unavailable_503": len(unavailable),
            "503_without_retry_after": sum(not o.retry_after for o in unavailable),
            "slowest_during_outage_s": round(max((o.seconds for o in self.during_outage()), default=0.0), 2),
            "slowest_s": round(max((o.seconds for o in self.load.outcomes), default=0.0), 2),
            "recovery_seconds": self.recovery_seconds,
            "readiness_during_outage": {"status": self.readiness_status, "checks": self.readiness_checks},
        }


def _first_success_after(load: LoadReport, moment: float) -> float | None:
    return min((o.finished for o in load.outcomes if o.ok and o.finished >= moment), default=None)


async def _readiness(gateway_url: str) -> tuple[int, dict]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"{gateway_url}/readyz")
    return response.status_code, response.json().get("checks", {})


async def run_fault(
    stack: Stack,
    fault: Fault,
    token: str,
    images: list[tuple[str, bytes]],
    outage_seconds: float = 4.0,
    before_seconds: float = 2.0,
    after_seconds: float = 2.0,
    concurrency: int = 32,
) -> FaultReport:
    """Load throughout; the dependency is down for `outage_seconds` (plus however long its restart takes)."""
    stop_load = asyncio.Event()
    report = FaultReport(fault.name, LoadReport())
    load = asyncio.create_task(
        run_load(stack.url, token, images, stop=stop_load, concurrency=concurrency, report=report.load)
    )
    try:
        await asyncio.sleep(before_seconds)
        report.down_at = time.monotonic()
        await asyncio.to_thread(fault.stop, stack)
        await asyncio.sleep(min(1.0, outage_seconds / 2))
        report.readiness_status, report.readiness_checks = await _readiness(stack.url)
        await asyncio.sleep(max(0.0, report.down_at + outage_seconds - time.monotonic()))
        await asyncio.to_thread(fault.start, stack)
        report.back_at = time.monotonic()
        deadline = report.back_at + RECOVERY_LIMIT_SECONDS
        while (recovered := _first_success_after(report.load, report.back_at)) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        report.recovered_at = recovered
        await asyncio.sleep(after_seconds)
    finally:
        stop_load.set()
        await load
    return report
