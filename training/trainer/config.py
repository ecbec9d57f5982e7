"""The training configuration (one frozen dataclass) and its command line."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR_ENV = "CXR_DATA_DIR"
DATA_FILE = "pneumoniamnist/pneumoniamnist_28.npz"
MODEL_NAME = "pneumonia-xray"
MODEL_VERSION = "1"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, REPO_ROOT.parent / "shared" / "data"))


def default_output_dir() -> Path:
    return REPO_ROOT / "models" / MODEL_NAME / MODEL_VERSION


def default_runs_dir() -> Path:
    return REPO_ROOT / "training" / "runs"


@dataclass(frozen=True)
class TrainConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    output_dir: Path = field(default_factory=default_output_dir)
    runs_dir: Path = field(default_factory=default_runs_dir)

    seed: int = 42
    image_size: int = 28
    max_train_samples: int | None = None

    # Model: Conv-BN-ReLU x2 + max-pool per entry of `filters`, then global average pooling.
    filters: tuple[int, ...] = (32, 64, 128)
    dropout: float = 0.3
    # Augmentation (training only): rotation as a fraction of a full turn, zoom and
    # translation as fractions of the image side.
    rotation: float = 0.03
    zoom: float = 0.1
    translation: float = 0.1

    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    monitor: str = "val_auc"
    early_stopping_patience: int = 8
    reduce_lr_patience: int = 3
    reduce_lr_factor: float = 0.5
    min_learning_rate: float = 1e-5

    # Decision threshold: highest Youden's J on val among thresholds keeping this val sensitivity.
    min_sensitivity: float = 0.95

    opset: int = 17
    parity_max_abs_diff: float = 1e-4

    @property
    def data_file(self) -> Path:
        return self.data_dir / DATA_FILE

    def to_json_dict(self) -> dict:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}

    def hyperparameters(self) -> dict:
        """The settings that shape the model, as JSON values, without machine-specific paths (for the card)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
            if not isinstance(value, Path)
        }


def _int_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


_SPECIAL_FLAGS = {"data_dir", "output_dir", "runs_dir", "filters"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.train",
        allow_abbrev=False,
        description="Train the pneumonia-xray CNN on PneumoniaMNIST and write model.onnx + model.json.",
    )
    defaults = TrainConfig()
    parser.add_argument("--data-dir", type=Path, help=f"folder holding {DATA_FILE} (env {DATA_DIR_ENV})")
    parser.add_argument("--output-dir", type=Path, help=f"model version folder (default {default_output_dir()})")
    parser.add_argument("--runs-dir", type=Path, help=f"where run folders go (default {default_runs_dir()})")
    parser.add_argument("--filters", type=_int_tuple, help="comma-separated conv widths, e.g. 32,64,128")
    for item in fields(TrainConfig):
        if item.name in _SPECIAL_FLAGS:
            continue
        value = getattr(defaults, item.name)
        kind = int if item.name == "max_train_samples" else type(value)
        parser.add_argument("--" + item.name.replace("_", "-"), type=kind, help=f"default {value}")
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    arguments = vars(build_parser().parse_args(argv))
    overrides = {name: value for name, value in arguments.items() if value is not None}
    return replace(TrainConfig(), **overrides)
