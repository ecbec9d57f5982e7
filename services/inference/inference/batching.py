"""Dynamic batching: concurrent requests to one model run as one onnxruntime call.

Callers put their (already validated) feeds on a queue and wait for their future. One thread
per model, the batcher's, takes the first waiting request, keeps collecting for at most
`max_queue_delay_us` or until `max_batch_size` rows, concatenates the inputs along the batch
axis, runs the model once and hands every caller back exactly its own rows: one call into the
event loop per batch settles them all.

The batcher lives on its own thread, not on the event loop, so that the next batch starts as
soon as the previous one ends: waiting for the event loop between batches (busy answering the
previous batch's requests and reading the next ones) would leave the model idle meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from inference import metrics
from inference.model import OnnxModel

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    feeds: dict[str, np.ndarray]
    output_names: list[str]
    future: asyncio.Future
    rows: int
    queued_at: float = field(default_factory=time.perf_counter)

    def signature(self) -> tuple:
        """Requests can share a batch when their inputs agree in everything but batch size."""
        return tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in self.feeds.items()))


_Answer = tuple[_Pending, dict[str, np.ndarray] | None, Exception | None]  # rows or the error


class Batcher:
    def __init__(self, model: OnnxModel, max_batch_size: int, max_queue_delay_us: int):
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_delay = max_queue_delay_us / 1_000_000
        self.loop = asyncio.get_running_loop()
        self.queue: deque[_Pending] = deque()
        self.ready = threading.Condition(threading.Lock())  # guards `queue` and `closed`
        self.closed = False
        self.running = False  # a batch is on the model
        self._queue_time = metrics.QUEUE_TIME.labels(model.name, model.version)
        self._batch_size = metrics.BATCH_SIZE.labels(model.name, model.version)
        self.thread = threading.Thread(target=self._serve, name=f"batcher-{model.name}-{model.version}", daemon=True)
        self.thread.start()

    @property
    def idle(self) -> bool:
        """Nothing queued or running, and no queue delay to wait out for companions."""
        return not self.running and not self.queue and self.max_delay == 0

    def record_run_here(self, rows: int) -> None:
        """A call the data plane ran itself (see `OnnxModel.predict_here`) is a batch of its own rows."""
        self._queue_time.observe(0.0)
        self._batch_size.observe(rows)

    async def predict(self, feeds: dict[str, np.ndarray], output_names: list[str], rows: int) -> dict[str, np.ndarray]:
        pending = _Pending(feeds, output_names, self.loop.create_future(), rows)
        with self.ready:  # unbounded: the data plane bounds the requests in flight
            self.queue.append(pending)
            self.ready.notify()
        return await pending.future

    def close(self) -> None:
        """The thread answers what is queued already, then ends."""
        with self.ready:
            self.closed = True
            self.ready.notify()

    # -- on the batcher's thread --------------------------------------------------------------

    def _serve(self) -> None:
        while (batch := self._collect()) is not None:
            try:
                groups: dict[tuple, list[_Pending]] = {}
                for pending in batch:
                    groups.setdefault(pending.signature(), []).append(pending)
                for group in groups.values():
                    self._run_batch(group)
            except RuntimeError:  # the event loop closed: the server is shutting down
                return
            finally:
                self.running = False

    def _collect(self) -> list[_Pending] | None:
        """The next batch (None once closed and drained); callers that gave up (timeout) are dropped."""
        with self.ready:
            while not self.queue:
                if self.closed:
                    return None
                self.ready.wait()
            batch = [self.queue.popleft()]
            rows = batch[0].rows
            deadline = time.perf_counter() + self.max_delay
            while rows < self.max_batch_size:
                if not self.queue:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0 or self.closed:
                        break
                    self.ready.wait(remaining)
                    continue
                batch.append(self.queue.popleft())
                rows += batch[-1].rows
            self.running = True
        return [pending for pending in batch if not pending.future.done()]

    def _run_batch(self, group: list[_Pending]) -> None:
        started = time.perf_counter()
        for pending in group:
            self._queue_time.observe(started - pending.queued_at)
        self._batch_size.observe(sum(pending.rows for pending in group))
        output_names = sorted({name for pending in group for name in pending.output_names})
        try:
            if len(group) == 1:
                feeds = group[0].feeds
            else:
                feeds = {name: np.concatenate([p.feeds[name] for p in group]) for name in group[0].feeds}
            outputs = self.model.predict(feeds, output_names)
        except Exception as exc:
            if len(group) == 1:
                failed: list[_Answer] = [(group[0], None, exc)]
                self.loop.call_soon_threadsafe(_settle, failed)
                return
            log.warning("a batch of %d requests failed (%s); running them one by one", len(group), exc)
            for pending in group:
                self._run_batch([pending])
            return
        answers: list[_Answer] = []
        offset = 0
        for pending in group:
            rows = slice(offset, offset + pending.rows)
            answers.append((pending, {name: outputs[name][rows] for name in pending.output_names}, None))
            offset += pending.rows
        self.loop.call_soon_threadsafe(_settle, answers)


def _settle(answers: list[_Answer]) -> None:
    """On the event loop: each caller's rows, or the error."""
    for pending, result, exception in answers:
        if pending.future.done():  # the caller gave up (timeout) meanwhile
            continue
        if exception is not None:
            pending.future.set_exception(exception)
        else:
            pending.future.set_result(result)
