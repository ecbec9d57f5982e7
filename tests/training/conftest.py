"""Shared fixtures for the training tests (run them with .venv-training/bin/python -m pytest tests/training)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported

from pathlib import Path

import pytest
from training_support import MEDNIST_CLASSES

from trainer.config import COMMITTED_MODEL, DATA_DIR_ENV, REPO_ROOT, default_data_dir
from trainer.data import NpzDataSet

PNEUMONIAMNIST = NpzDataSet.read("pneumoniamnist")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def committed_model_dir() -> Path:
    return REPO_ROOT / COMMITTED_MODEL


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder; tests that need PneumoniaMNIST skip when it is absent."""
    folder = default_data_dir()
    if not (folder / PNEUMONIAMNIST.file).is_file():
        pytest.skip(
            f"PneumoniaMNIST not found at {folder / PNEUMONIAMNIST.file}: set {DATA_DIR_ENV} to the shared data "
            "folder (default <repo>/../shared/data) to run this test"
        )
    return folder


@pytest.fixture(scope="session")
def data_file(data_dir: Path) -> Path:
    return data_dir / PNEUMONIAMNIST.file


@pytest.fixture(scope="session")
def samples_dir(data_dir: Path) -> Path:
    """55 Kermany JPEGs: samples/normal/*.jpg and samples/pneumonia/personN_{bacteria,virus}_M.jpg."""
    folder = data_dir / "samples"
    if not (folder / "normal").is_dir() or not (folder / "pneumonia").is_dir():
        pytest.skip(f"sample X-rays not found under {folder}")
    return folder


@pytest.fixture(scope="session")
def mednist_dir() -> Path:
    """MedNIST: one folder of 1000 64x64 JPEGs per class (Hand, ChestCT, CXR, ...)."""
    folder = default_data_dir() / "other-images" / "mednist"
    if not all((folder / label).is_dir() for label in MEDNIST_CLASSES):
        pytest.skip(f"MedNIST not found under {folder}")
    return folder


@pytest.fixture()
def quick_config(samples_dir: Path, tmp_path: Path):
    """A factory of 1-epoch configs on the sample X-rays (normal/ vs pneumonia/ folders)."""
    from trainer.config import TrainConfig

    def make(**overrides) -> TrainConfig:
        settings = {
            "dataset": "image-folder",
            "data_dir": samples_dir,
            "output_dir": tmp_path / "repository" / "quick" / "1",
            "runs_dir": tmp_path / "runs",
            "epochs": 1,
            "batch_size": 16,
            "filters": (4, 8),
            "embedding_baselines": False,
            "verbose": 0,
        }
        return TrainConfig(**(settings | overrides))

    return make
