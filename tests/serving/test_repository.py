"""Loading the model repository: every model warmed up, a broken one reported, not fatal."""

import json
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from inference.errors import ModelNotFound
from inference.repository import ModelRepository
from inference.settings import Settings

COMMITTED_MODEL = Path(__file__).resolve().parents[2] / "models" / "pneumonia-xray" / "1"


@pytest.fixture
def repository_root(tmp_path):
    """A repository with the real model as versions 1 and 2, and a version 3 whose file was tampered with."""
    for version in ("1", "2", "3"):
        target = tmp_path / "pneumonia-xray" / version
        shutil.copytree(COMMITTED_MODEL, target)
        card = json.loads((target / "model.json").read_text())
        card["version"] = version
        (target / "model.json").write_text(json.dumps(card))
    with (tmp_path / "pneumonia-xray" / "3" / "model.onnx").open("ab") as onnx:
        onnx.write(b"tampered")
    return tmp_path


def test_broken_version_is_reported_and_the_others_serve(repository_root):
    repository = ModelRepository(Settings(model_repository=repository_root))
    repository.load_all()
    assert repository.versions("pneumonia-xray") == ["1", "2"]
    assert "does not match the sha256" in repository.load_errors["pneumonia-xray/3"]
    assert repository.ready
    assert repository.get("pneumonia-xray").version == "2"  # the highest version is the default
    assert repository.get("pneumonia-xray", "1").ready
    with pytest.raises(ModelNotFound):
        repository.get("pneumonia-xray", "3")


def test_an_empty_repository_is_not_ready(tmp_path):
    repository = ModelRepository(Settings(model_repository=tmp_path))
    repository.load_all()
    assert not repository.ready


def test_serving_environment_has_no_tensorflow():
    import importlib.util

    assert importlib.util.find_spec("tensorflow") is None, f"tensorflow is installed in {sys.prefix}"
    assert "tensorflow" not in sys.modules
    pyproject = Path(__file__).resolve().parents[2] / "services" / "inference" / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert not [dependency for dependency in dependencies if "tensorflow" in dependency.lower()]
