"""The committed image-kind model, re-measured from its ONNX file on its held-out split.

The split is rebuilt exactly as training made it: `training/prepare_image_kind.py` lays the
images out again, and the card's own training config (seed, ratios) splits them. The card's
test metrics must be what the ONNX model scores here, every kind must be recognised at least
99% of the time, and no chest CT slice may pass for a chest X-ray or the other way round.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cxr_model.answer import calibrated, decide
from cxr_model.card import ONNX_FILE, ModelCard

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO_ROOT / "models" / "image-kind" / "1"


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard.read(MODEL_DIR)


@pytest.fixture(scope="module")
def held_out(card, data_dir, tmp_path_factory):
    """(images, true label ids) of the test split, laid out and split as in training."""
    from trainer.config import TrainConfig
    from trainer.data import load_dataset

    spec = importlib.util.spec_from_file_location("prepare_image_kind", REPO_ROOT / "training" / "prepare_image_kind.py")
    assert spec is not None and spec.loader is not None
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    folder = tmp_path_factory.mktemp("image-kind")
    prepare.link_real_images(data_dir, folder)
    prepare.write_made_images(folder)
    config = replace(TrainConfig.from_json_dict(card.training["config"]), data_dir=folder)
    dataset = load_dataset(config)
    assert dataset.labels == tuple(card.labels)
    return dataset.test.images, dataset.test.label_ids


@pytest.fixture(scope="module")
def decided(card, held_out) -> np.ndarray:
    images, _ = held_out
    session = ort.InferenceSession(str(MODEL_DIR / ONNX_FILE), providers=["CPUExecutionProvider"])
    probabilities = np.concatenate(
        [session.run([card.outputs[0].name], {card.inputs[0].name: images[i : i + 256]})[0] for i in range(0, len(images), 256)]
    )
    rows = calibrated(card, probabilities)
    return np.array([card.labels.index(decide(card, dict(zip(card.labels, row, strict=True)))) for row in rows])


def test_every_kind_is_recognised_at_least_99_percent_of_the_time(card, held_out, decided):
    _, truth = held_out
    for index, label in enumerate(card.labels):
        recall = float(np.mean(decided[truth == index] == index))
        assert recall >= 0.99, f"{label}: recall {recall:.4f} on {int(np.sum(truth == index))} held-out images"


def test_no_chest_ct_passes_for_a_chest_xray_nor_the_other_way_round(card, held_out, decided):
    _, truth = held_out
    ct, xray = card.labels.index("chest_ct"), card.labels.index("chest_xray")
    assert int(np.sum((truth == ct) & (decided == xray))) == 0
    assert int(np.sum((truth == xray) & (decided == ct))) == 0


def test_the_card_states_what_the_onnx_model_scores(card, held_out, decided):
    _, truth = held_out
    test = card.metrics["test"]
    assert test["accuracy"] == pytest.approx(float(np.mean(decided == truth)), abs=1e-6)
    for index, label in enumerate(card.labels):
        assert test[f"recall_{label}"] == pytest.approx(float(np.mean(decided[truth == index] == index)), abs=1e-6)
