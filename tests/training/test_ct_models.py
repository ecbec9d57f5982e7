"""The committed CT models (`models/covid-ct/1`, `models/covid-ct-severity/1`), re-measured from their
ONNX files on their held-out images, and a short run of the CT pipeline as CI can afford it.

The held-out images are laid out again by `training/prepare_ct.py` (the covid-ct set's own
source-grouped split, the near-duplicate-grouped split of the Sao Paulo set, the severity
slices split by volume) and read with each card's own training config; every test figure the
card states from its own ONNX model must be what that model scores here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cxr_model.card import ONNX_FILE, ModelCard, file_sha256
from trainer.config import REPO_ROOT, TrainConfig, default_data_dir, read_classes
from trainer.pipeline import train

MODELS = REPO_ROOT / "models"
COVID, SEVERITY, IMAGE_KIND = MODELS / "covid-ct" / "1", MODELS / "covid-ct-severity" / "1", MODELS / "image-kind" / "1"
CT_SETS = ("covid-ct", "sars-cov-2-ct", "covid-ct-severity")
# the metrics entries measured on the committed ONNX model, and the layout (prepare_ct) of each
OWN_FIGURES = {
    COVID: {"test": "both", "test_covid_ct": "covid-ct", "test_sars_cov_2_ct": "sars-cov-2-ct"},
    SEVERITY: {"test": "severity"},
}


def training_script(name: str) -> ModuleType:
    sys.path.insert(0, str(REPO_ROOT / "training"))  # the scripts import each other by name
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "training" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ct_data_dir() -> Path:
    folder = default_data_dir()
    missing = [name for name in CT_SETS if not (folder / name).is_dir()]
    if missing:
        pytest.skip(f"CT data sets {missing} not found under {folder} (see training/README.md)")
    return folder


@pytest.fixture(scope="module")
def layouts(ct_data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ct")
    training_script("prepare_ct").lay_out(ct_data_dir, out)
    return out


@pytest.mark.parametrize("model_dir", list(OWN_FIGURES), ids=lambda path: path.parent.name)
def test_the_card_states_what_the_onnx_model_scores_on_held_out_images(model_dir, layouts):
    measure = training_script("measure")
    card = ModelCard.read(model_dir)
    assert card.onnx_sha256 == file_sha256(model_dir / ONNX_FILE)
    for name, layout in OWN_FIGURES[model_dir].items():
        metrics, intervals = measure.measure(model_dir, layouts / layout)
        stated = card.metrics[name]
        stated = stated | ({} if "ece" in stated else {"ece": card.metrics["calibration"][f"{name}_ece"]})
        for key, value in metrics.items():
            assert stated[key] == pytest.approx(value, abs=1e-6), f"{name}.{key}"
        for key, (low, high) in card.metrics_ci[name].items():
            assert low <= stated[key] <= high or key == "ece", f"{name}.{key} outside its interval"
        assert intervals.keys() == card.metrics_ci[name].keys()


def test_ct_slices_are_routed_to_the_covid_model_and_covid_answers_to_the_severity_model():
    kind_labels = ModelCard.read(IMAGE_KIND).labels
    covid, severity = ModelCard.read(COVID), ModelCard.read(SEVERITY)
    assert covid.intended_use is not None and severity.intended_use is not None
    assert covid.intended_use.image_kind == "chest_ct" and "chest_ct" in kind_labels
    assert covid.intended_use.follows is None and covid.intended_use.modalities == ["CT"]
    follows = severity.intended_use.follows
    assert follows is not None and (follows.model, follows.label) == ("covid-ct", "covid")
    assert follows.label in covid.labels
    assert severity.labels == ["mild", "moderate", "severe"]


def test_the_cards_state_the_figures_the_issue_asks_for():
    covid, severity = ModelCard.read(COVID), ModelCard.read(SEVERITY)
    for entry in (
        "test",
        "test_covid_ct",
        "test_sars_cov_2_ct",
        "cross_source_sars_to_covid_ct",
        "cross_source_covid_ct_to_sars",
    ):
        assert {"roc_auc", "sensitivity", "specificity"} <= covid.metrics[entry].keys()
        assert covid.metrics_ci[entry]["roc_auc"][0] <= covid.metrics[entry]["roc_auc"]
    assert {"quadratic_kappa", "macro_f1", "recall_mild", "recall_moderate", "recall_severe"} <= severity.metrics[
        "test"
    ].keys()
    for card in (covid, severity):
        assert card.calibration is not None and card.ood is not None and card.explanation is not None
        assert card.training.get("pretraining"), "the card says how the network was pretrained"


def test_a_short_run_of_the_ct_pipeline_pretrains_trains_and_exports(ct_data_dir, layouts, tmp_path):
    """CI's run: self-supervised pretraining on a few images, then one epoch from those weights on a
    subset of both CT sets, exported with its card (under two minutes on two CPU cores)."""
    pretrain = training_script("pretrain")
    config = TrainConfig(image_size=32, filters=(8, 16), rotation=0.0, shear=0.0, brightness=0.0, batch_size=32)
    paths = pretrain.pretraining_images(ct_data_dir)[::40]
    images = np.stack([pretrain.preprocess_bytes(path.read_bytes(), pretrain.preprocessing_spec(32)) for path in paths])
    weights_file = tmp_path / "pretrained.npz"
    np.savez(weights_file, **pretrain.pretrain(config, images, epochs=1))
    classes = read_classes(str(layouts / "classes-covid.json"))
    run = TrainConfig(
        dataset="image-csv",
        data_dir=layouts / "both",
        labels_csv=layouts / "both" / "labels.csv",
        classes=classes,
        output_dir=tmp_path / "repository" / "covid-ct" / "9",
        runs_dir=tmp_path / "runs",
        image_size=32,
        filters=(8, 16),
        init_weights=weights_file,
        brightness=0.0,
        epochs=1,
        max_train_samples=300,
        batch_size=32,
        embedding_baselines=False,
        verbose=0,
    )
    card = train(run)
    assert (card.name, card.version, card.labels) == ("covid-ct", "9", ["non-covid", "covid"])
    assert card.decision.positive_class == "covid" and card.metrics["onnx_parity"]["label_agreement"] == 1.0
    listed = (layouts / "both" / "labels.csv").read_text().splitlines()[1:]
    assert card.training["splits"]["test"] == sum(row.split(",")[2] == "test" for row in listed)
    assert card.training["splits"]["train"] == 300 and card.training["epochs_run"] == 1
