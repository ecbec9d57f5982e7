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

COMMITTED_VERSION = "2"
COMMITTED_MODEL = Path(__file__).resolve().parents[2] / "models" / "pneumonia-xray" / COMMITTED_VERSION


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


def copy_version(root: Path, version: str) -> Path:
    """The committed model copied into `root` as `version` (its card says so too)."""
    target = root / "pneumonia-xray" / version
    shutil.copytree(COMMITTED_MODEL, target)
    card = json.loads((target / "model.json").read_text())
    card["version"] = version
    (target / "model.json").write_text(json.dumps(card))
    return target


def test_refresh_picks_up_new_and_removed_versions(tmp_path):
    copy_version(tmp_path, "1")
    repository = ModelRepository(Settings(model_repository=tmp_path))
    repository.load_all()
    first = repository.get("pneumonia-xray", "1")

    copy_version(tmp_path, "2")
    repository.refresh()
    assert repository.versions("pneumonia-xray") == ["1", "2"]
    assert repository.get("pneumonia-xray", "1") is first  # untouched versions are not reloaded

    shutil.rmtree(tmp_path / "pneumonia-xray" / "1")
    index = repository.refresh()
    assert repository.versions("pneumonia-xray") == ["2"] and not first.ready
    assert [(entry.version, entry.state) for entry in index] == [("2", "READY")]


def test_a_broken_version_is_in_the_index_and_loads_once_repaired(repository_root):
    repository = ModelRepository(Settings(model_repository=repository_root))
    index = {entry.version: entry for entry in repository.refresh()}
    assert index["3"].state == "UNAVAILABLE" and "sha256" in index["3"].reason
    assert index["1"].state == index["2"].state == "READY"

    shutil.copy(COMMITTED_MODEL / "model.onnx", repository_root / "pneumonia-xray" / "3" / "model.onnx")
    repository.refresh()
    assert repository.get("pneumonia-xray").version == "3" and not repository.load_errors


def test_unload_keeps_a_model_out_until_it_is_loaded_again(repository_root):
    repository = ModelRepository(Settings(model_repository=repository_root))
    repository.load_all()
    repository.unload("pneumonia-xray")
    repository.refresh()
    assert "pneumonia-xray" not in repository.models
    assert [(entry.name, entry.state, entry.reason) for entry in repository.index()] == [
        ("pneumonia-xray", "UNAVAILABLE", "unloaded")
    ]
    repository.load("pneumonia-xray")
    assert repository.versions("pneumonia-xray") == ["1", "2"]
    with pytest.raises(ModelNotFound):
        repository.load("knee-mri")


def test_an_unreachable_s3_repository_is_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    settings = Settings(model_repository="s3://models/serving", s3_endpoint_url="http://127.0.0.1:9", model_cache_dir=tmp_path)
    copy_version(tmp_path, "1")  # what an earlier sync left in the cache
    repository = ModelRepository(settings)
    repository.load_all()
    assert repository.versions("pneumonia-xray") == ["1"]
