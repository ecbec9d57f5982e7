from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[3]


class Settings(BaseSettings):
    """Inference service settings, read from INFERENCE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="INFERENCE_", protected_namespaces=())

    model_repository: Path = REPO_ROOT / "models"
    intra_op_threads: int = 0  # 0 lets onnxruntime choose
    inter_op_threads: int = 0
    max_body_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
