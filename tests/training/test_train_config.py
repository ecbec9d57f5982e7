import json
import re
from pathlib import Path

import pytest
from training_support import words

from trainer.cli import train_config as parse_config
from trainer.config import DATA_DIR_ENV, REPO_ROOT, ConfigError, TrainConfig, read_classes
from trainer.data import NpzDataSet


def test_defaults_write_the_committed_model_version(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    config = TrainConfig()
    assert config.output_dir == REPO_ROOT / "models" / "pneumonia-xray" / "2"
    assert (config.model_name, config.model_version) == ("pneumonia-xray", "2")
    assert config.data_dir == REPO_ROOT.parent / "shared" / "data"
    assert config.dataset == "pneumoniamnist" and config.classes == {}
    assert NpzDataSet.read(config.dataset).file == "pneumoniamnist/pneumoniamnist_28.npz"
    assert config.max_train_samples is None


def test_the_card_name_and_version_are_the_output_folders(tmp_path):
    config = parse_config(["--output-dir", str(tmp_path / "repository" / "body-part" / "7")])
    assert (config.model_name, config.model_version) == ("body-part", "7")


def test_data_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert TrainConfig().data_dir == tmp_path
    assert parse_config([]).data_dir == tmp_path


def test_command_line_overrides_only_what_it_names(tmp_path):
    config = parse_config(
        [
            "--output-dir", str(tmp_path / "out"),
            "--epochs", "3",
            "--max-train-samples", "100",
            "--learning-rate", "0.01",
            "--filters", "8,16",
            "--monitor", "val_loss",
        ]
    )  # fmt: skip
    assert config.output_dir == tmp_path / "out"
    assert (config.epochs, config.max_train_samples, config.learning_rate) == (3, 100, 0.01)
    assert config.filters == (8, 16)
    assert config.monitor == "val_loss"
    assert config.batch_size == TrainConfig().batch_size
    assert config.seed == TrainConfig().seed


@pytest.mark.parametrize("argv", [["--epoch", "3"], ["--colour", "rgb"], ["--epochs", "three"]])
def test_unknown_abbreviated_or_malformed_flags_are_rejected(argv):
    with pytest.raises(SystemExit):
        parse_config(argv)


def test_card_hyperparameters_leave_out_machine_paths():
    hyperparameters = TrainConfig().hyperparameters()
    assert "output_dir" not in hyperparameters and "data_dir" not in hyperparameters
    assert hyperparameters["seed"] == 42
    assert not any(isinstance(value, Path) for value in hyperparameters.values())
    assert all(isinstance(value, str) for key, value in TrainConfig().to_json_dict().items() if key.endswith("_dir"))


def test_every_field_has_a_flag_and_lists_and_booleans_parse(tmp_path):
    classes = words("normal", "bacteria", "virus")
    text = json.dumps({label: described.model_dump() for label, described in classes.items()})
    config = parse_config(
        ["--classes", text, "--split-ratios", "0.7,0.2,0.1", "--oversample", "true",
         "--labels-csv", str(tmp_path / "labels.csv"), "--architecture", "stn"]
    )  # fmt: skip
    assert config.classes == classes and list(config.classes) == ["normal", "bacteria", "virus"]
    assert config.split_ratios == (0.7, 0.2, 0.1)
    assert config.oversample is True and config.labels_csv == tmp_path / "labels.csv"
    assert TrainConfig.from_json_dict(config.to_json_dict()) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"architecture": "resnet50"}, "unknown architecture 'resnet50'"),
        ({"flip": "diagonal"}, "unknown flip"),
        ({"architecture": "resnet101v2", "image_size": 28}, "needs image_size >= 32"),
        ({"split_ratios": (1.0,)}, "split_ratios must be two .train,test. or three"),
        ({"split_ratios": (0.7, 0.0)}, "split_ratios must be two .train,test. or three"),
        ({"dataset": "image-csv"}, "needs --labels-csv"),
        ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
        ({"label_source": "filename"}, "label_source filename needs --classes"),
        ({"pretrained_weights": Path("/nonexistent/weights.h5")}, "pretrained weights file not found"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(overrides, message):
    from dataclasses import replace

    from trainer.config import ConfigError, validate

    with pytest.raises(ConfigError, match=message):
        validate(replace(TrainConfig(), **overrides))
    validate(TrainConfig())


def test_classes_come_as_json_text_or_a_file_in_the_order_given(tmp_path):
    text = json.dumps(
        {"Hand": {"name": "Hand X-ray", "finding": "A hand"}, "CXR": {"name": "Chest X-ray", "finding": "A chest"}}
    )
    (tmp_path / "classes.json").write_text(text)
    for given in (text, str(tmp_path / "classes.json")):
        classes = read_classes(given)
        assert list(classes) == ["Hand", "CXR"]
        assert (classes["CXR"].name, classes["CXR"].finding) == ("Chest X-ray", "A chest")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": {"name": "A"}}', "a.finding: Field required"),
        ('{"a": "A"}', "--classes is not label -> {name, finding}: a"),
        ("{not json", "--classes is not label -> {name, finding}"),
        ("absent.json", "neither a JSON object nor a file: absent.json"),
    ],
)
def test_classes_that_cannot_be_read_are_refused_in_one_line(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_classes(text)
