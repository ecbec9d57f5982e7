"""Between HTTP and models: validation against the model, limits, batching, decisions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np
from anyio import to_thread

from cxr_model.answer import Classification, RoutedClassification
from inference import __version__
from inference.batching import Batcher
from inference.codec import InferRequest, InferResult, Tensor
from inference.errors import BadRequest, RequestTimeout, ServerBusy
from inference.model import OnnxModel
from inference.protocol import MetadataModelResponse, MetadataServerResponse, MetadataTensor
from inference.repository import IndexEntry, ModelRepository
from inference.settings import Settings

SERVER_NAME = "cxr-inference"
EXTENSIONS = ["binary_tensor_data", "model_repository", "image_classification"]


class DataPlane:
    def __init__(self, repository: ModelRepository, settings: Settings):
        self.repository = repository
        self.settings = settings
        self.batchers: dict[OnnxModel, Batcher] = {}
        self.in_flight = 0  # calls being answered
        self.calls_finished = 0

    # -- health and metadata ------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.ready

    def server_metadata(self) -> MetadataServerResponse:
        return MetadataServerResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return self.repository.get(name, version).ready

    def model_metadata(self, name: str, version: str | None = None) -> MetadataModelResponse:
        model = self.repository.get(name, version)
        card = model.card
        return MetadataModelResponse(
            name=name,
            versions=self.repository.versions(name),
            platform="onnxruntime_onnx",
            inputs=[MetadataTensor(**spec) for spec in model.input_specs()],
            outputs=[MetadataTensor(**spec) for spec in model.output_specs()],
            parameters={
                **card.summary().model_dump(mode="json"),
                "preprocessing": card.preprocessing.model_dump(),
                "decision": card.decision.model_dump(),
                "image_input": model.image_input,  # also takes BYTES: image files, preprocessed here
                # how the image call turns the extra outputs into calibrated, explained, OOD-checked answers
                **{
                    key: value.model_dump()
                    for key, value in {
                        "calibration": card.calibration,
                        "explanation": card.explanation,
                        "ood": card.ood,
                    }.items()
                    if value is not None
                },
            },
        )

    # -- repository ---------------------------------------------------------------------

    async def repository_index(self) -> list[IndexEntry]:
        index = await to_thread.run_sync(self.repository.refresh)
        self._close_stale_batchers()
        return index

    async def load_model(self, name: str) -> None:
        await to_thread.run_sync(self.repository.load, name)
        self._close_stale_batchers()

    async def unload_model(self, name: str) -> None:
        await to_thread.run_sync(self.repository.unload, name)
        self._close_stale_batchers()

    def close(self) -> None:
        """At shutdown: the batchers answer what is queued and stop."""
        for batcher in self.batchers.values():
            batcher.close()

    def _close_stale_batchers(self) -> None:
        current = set(self.repository.all_models())
        for model in [model for model in self.batchers if model not in current]:
            self.batchers.pop(model).close()

    # -- inference ----------------------------------------------------------------------

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResult:
        version = _addressed_version(name, version, request)
        self._admit()
        try:
            async with asyncio.timeout(self.settings.request_timeout_seconds):
                model = self.repository.get(name, version)
                feeds = await self._feeds(model, request.inputs)
                wanted = _wanted_outputs(model, request)
                outputs = await self._predict(model, feeds, wanted)
                return InferResult(model.name, model.version, {name: outputs[name] for name in wanted}, request.id)
        except TimeoutError:
            raise self._timed_out() from None
        finally:
            self._leave()

    async def classify_image(self, name: str, version: str | None, image: bytes) -> Classification:
        self._admit()
        try:
            async with asyncio.timeout(self.settings.request_timeout_seconds):
                model = self.repository.get(name, version)
                return await self._answer(model, await self._preprocess(model, [image]))
        except TimeoutError:
            raise self._timed_out() from None
        finally:
            self._leave()

    async def route_image(
        self, name: str, version: str | None, image: bytes, routes: Mapping[str, str]
    ) -> RoutedClassification:
        """The model's answer for the image and, where `routes` maps its label to a model, that model's answer
        too: the image is decoded once, and preprocessed for each model as its card says."""
        self._admit()
        try:
            async with asyncio.timeout(self.settings.request_timeout_seconds):
                model = self.repository.get(name, version)
                targets = {label: self.repository.get(target) for label, target in routes.items()}
                decoded, batch = await to_thread.run_sync(model.decode_and_preprocess, image, abandon_on_cancel=True)
                routing = await self._answer(model, batch)
                target = targets.get(routing.label)
                if target is None:
                    return RoutedClassification(routing=routing)
                routed_batch = await to_thread.run_sync(target.preprocess_decoded, decoded, abandon_on_cancel=True)
                return RoutedClassification(routing=routing, routed=await self._answer(target, routed_batch))
        except TimeoutError:
            raise self._timed_out() from None
        finally:
            self._leave()

    async def _answer(self, model: OnnxModel, batch: np.ndarray) -> Classification:
        outputs = await self._predict(model, {model.image_input: batch}, model.classify_outputs())
        return model.classification({output: values[0] for output, values in outputs.items()})

    # At most `max_queued_requests` at once, each within `request_timeout_seconds`.

    def _admit(self) -> None:
        if self.in_flight >= self.settings.max_queued_requests:
            raise ServerBusy(f"the server is answering {self.in_flight} requests already; retry shortly")
        self.in_flight += 1

    def _leave(self) -> None:
        self.in_flight -= 1
        self.calls_finished += 1

    def _timed_out(self) -> RequestTimeout:
        return RequestTimeout(f"no answer within {self.settings.request_timeout_seconds} s")

    async def _feeds(self, model: OnnxModel, inputs: list[Tensor]) -> dict[str, np.ndarray]:
        expected = model.input_spec_by_name
        feeds = {}
        for tensor in inputs:
            spec = expected.get(tensor.name)
            if spec is None:
                raise BadRequest(f"unknown input '{tensor.name}'; the model takes {sorted(expected)}")
            if tensor.datatype == "BYTES" and tensor.name == model.image_input:
                feeds[tensor.name] = await self._preprocess(model, list(tensor.array.ravel()))
            else:
                feeds[tensor.name] = _checked(tensor, spec)
        if len(feeds) != len(expected):
            raise BadRequest(f"missing inputs: {sorted(set(expected) - set(feeds))}")
        return feeds

    async def _preprocess(self, model: OnnxModel, images: list[bytes]) -> np.ndarray:
        if not images:
            raise BadRequest(f"input '{model.image_input}' holds no image")
        return await to_thread.run_sync(model.preprocess_images, images, abandon_on_cancel=True)

    async def _predict(
        self, model: OnnxModel, feeds: dict[str, np.ndarray], outputs: list[str]
    ) -> dict[str, np.ndarray]:
        batcher = self._batcher(model)
        rows = len(next(iter(feeds.values())))
        # The only request in flight, a quick model, nothing else running on it: run here, on the
        # event loop. A batch would hold this request alone, and the hop to the model's thread and
        # back would cost more than the run. Requests that have arrived meanwhile get one turn of
        # the event loop to show up first; under load they do, and all go to the model's thread
        # in batches while the event loop goes on reading and answering requests.
        if self._alone(batcher) and model.runs_quickly(rows):
            await asyncio.sleep(0)
            if self._alone(batcher) and (result := model.predict_here(feeds, outputs)) is not None:
                if batcher is not None:
                    batcher.record_run_here(rows)
                return result
        if batcher is None:
            return await model.predict_on_model_thread(feeds, outputs)
        return await batcher.predict(feeds, outputs, rows)

    def _alone(self, batcher: Batcher | None) -> bool:
        return self.in_flight == 1 and (batcher is None or batcher.idle)

    def _batcher(self, model: OnnxModel) -> Batcher | None:
        if model not in self.batchers:
            config = model.card.batching
            enabled = config.enabled if config else self.settings.batching
            if not enabled or not model.batchable:
                return None
            self.batchers[model] = Batcher(
                model,
                max_batch_size=_first_set(config and config.max_batch_size, self.settings.max_batch_size),
                max_queue_delay_us=_first_set(config and config.max_queue_delay_us, self.settings.max_queue_delay_us),
            )
        return self.batchers[model]


def _first_set(value, default):
    return default if value is None else value


def _checked(tensor: Tensor, spec: dict) -> np.ndarray:
    if tensor.datatype != spec["datatype"]:
        raise BadRequest(f"input '{tensor.name}' must be {spec['datatype']}, got {tensor.datatype}")
    shape = tensor.array.shape
    if len(shape) != len(spec["shape"]) or any(
        want not in (-1, got) for want, got in zip(spec["shape"], shape, strict=True)
    ):
        raise BadRequest(f"input '{tensor.name}' must have shape {spec['shape']}, got {list(shape)}")
    return tensor.array


def _wanted_outputs(model: OnnxModel, request: InferRequest) -> list[str]:
    known = model.output_names
    if not request.outputs:
        return known
    wanted = [output.name for output in request.outputs]
    unknown = set(wanted) - set(known)
    if unknown:
        raise BadRequest(f"unknown outputs: {sorted(unknown)}; the model has {known}")
    return wanted


def _addressed_version(name: str, version: str | None, request: InferRequest) -> str | None:
    """The version to run: the path's. A body's `model_name`/`model_version` (KServe's client sends the
    name) must agree with the path; with no version in the path, the body's `model_version` names it."""
    if request.model_name is not None and request.model_name != name:
        raise BadRequest(f"the body's model_name '{request.model_name}' is not the model in the path, '{name}'")
    if request.model_version is None:
        return version
    if version is not None and request.model_version != version:
        raise BadRequest(
            f"the body's model_version '{request.model_version}' is not the version in the path, '{version}'"
        )
    return request.model_version
