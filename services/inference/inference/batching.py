"""Dynamic batching: concurrent requests to one model run as one onnxruntime call.

Callers put their (already validated) feeds on a queue. One task per model takes the
first waiting request, keeps collecting for at most `max_queue_delay_us` or until
`max_batch_size` rows, concatenates the inputs along the batch axis, runs the model once
in a worker thread and hands every caller back exactly its own rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from inference import metrics
from inference.model import OnnxModel

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    feeds: dict[str, np.ndarray]
    output_names: list[str]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def rows(self) -> int:
        return len(next(iter(self.feeds.values())))

    def signature(self) -> tuple:
        """Requests can share a batch when their inputs agree in everything but batch size."""
        return tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in self.feeds.items()))


class Batcher:
    def __init__(self, model: OnnxModel, max_batch_size: int, max_queue_delay_us: int):
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_delay = max_queue_delay_us / 1_000_000
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._serve())

    async def predict(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        pending = _Pending(feeds, output_names, asyncio.get_running_loop().create_future())
        await self.queue.put(pending)
        return await pending.future

    def close(self) -> None:
        self.task.cancel()

    async def _serve(self) -> None:
        while True:
            batch = await self._collect()
            groups: dict[tuple, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.signature(), []).append(pending)
            for group in groups.values():
                await self._run(group)

    async def _collect(self) -> list[_Pending]:
        batch = [await self.queue.get()]
        deadline = time.perf_counter() + self.max_delay
        while sum(pending.rows for pending in batch) < self.max_batch_size:
            if self.queue.empty():
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            else:
                batch.append(self.queue.get_nowait())
        return [pending for pending in batch if not pending.future.done()]  # timed-out callers are dropped

    async def _run(self, group: list[_Pending]) -> None:
        if not group:
            return
        started = time.perf_counter()
        labels = (self.model.name, self.model.version)
        for pending in group:
            metrics.QUEUE_TIME.labels(*labels).observe(started - pending.queued_at)
        metrics.BATCH_SIZE.labels(*labels).observe(sum(pending.rows for pending in group))
        output_names = sorted({name for pending in group for name in pending.output_names})
        try:
            feeds = {name: np.concatenate([p.feeds[name] for p in group]) for name in group[0].feeds}
            outputs = await self.model.predict_on_model_thread(feeds, output_names)
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0], exception=exc)
                return
            log.warning("a batch of %d requests failed (%s); running them one by one", len(group), exc)
            for pending in group:
                await self._run([pending])
            return
        offset = 0
        for pending in group:
            rows = slice(offset, offset + pending.rows)
            _settle(pending, result={name: outputs[name][rows] for name in pending.output_names})
            offset += pending.rows


def _settle(pending: _Pending, result=None, exception: Exception | None = None) -> None:
    if pending.future.done():  # the caller gave up (timeout) meanwhile
        return
    if exception is not None:
        pending.future.set_exception(exception)
    else:
        pending.future.set_result(result)
