from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[3]


class Settings(BaseSettings):
    """Inference service settings, read from INFERENCE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="INFERENCE_", protected_namespaces=())

    # A local folder, or `s3://bucket/prefix` (credentials from the standard AWS_* variables)
    model_repository: str = str(REPO_ROOT / "models")
    s3_endpoint_url: str | None = None
    model_cache_dir: Path = Path("/tmp/cxr-inference-models")  # where an S3 repository is copied to
    repository_poll_seconds: float = 0.0  # 0: versions change only through the repository admin calls
    # the bearer token POST /v2/repository/index and .../load|unload require (the gateway's
    # INFERENCE_REPOSITORY_TOKEN); unset: they answer anyone (a warning is logged at start)
    repository_token: str | None = None

    # onnxruntime
    intra_op_threads: int = 0  # 0 lets onnxruntime choose
    inter_op_threads: int = 0
    # onnxruntime's threads busy-wait for the next run by default: a CPU each, taken from the
    # pod's limit and from its neighbours (the gateway, the database) between requests
    allow_spinning: bool = False
    # a JSON list in the environment; providers this onnxruntime build lacks are skipped
    execution_providers: list[str] = ["CPUExecutionProvider"]
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    # onnxruntime's CPU arena keeps the peak of the largest batch it has run for good; without
    # it activation memory goes back after each run, which keeps a server's memory predictable
    cpu_memory_arena: bool = False
    # onnxruntime calls of one model running at once (Triton's instance count); each already
    # uses intra_op_threads, and every extra one holds its own activations in memory
    concurrent_runs_per_model: int = Field(default=1, ge=1)
    # a call expected to take at most this long (a row's run time, timed at load, times the rows)
    # runs on the event loop when it is the only request being answered: no hop to the model's
    # thread and back, which costs more than a small model's run. 0: always on the model's thread
    inline_run_max_ms: float = Field(default=1.0, ge=0)
    # memory freed by inference goes back to the OS after this long without a call (0: never)
    memory_release_idle_seconds: float = Field(default=1.0, ge=0)

    # limits
    max_body_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    request_timeout_seconds: float = 30.0
    max_queued_requests: int = 64  # requests being answered at once; more get 503

    # dynamic batching, unless a model card's `batching` says otherwise. With no queue delay a
    # batch is whatever queued while the previous one ran: no added latency at low load.
    batching: bool = True
    max_batch_size: int = 32
    max_queue_delay_us: int = 0

    @field_validator("model_repository", mode="before")
    @classmethod
    def _path_as_text(cls, value):
        return str(value)
