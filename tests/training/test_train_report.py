"""The report: JSON, Markdown naming the model and the embedding baselines, and PNG plots."""

import json

import numpy as np
from training_support import binary_card, card_for

from trainer.baselines import embedding_baselines, tsne_map
from trainer.evaluate import Evaluation
from trainer.metrics import evaluate_split, reliability_bins
from trainer.report import write_report

CLASSES = ("normal", "pneumonia")


def separable_embeddings(count: int, seed: int, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    return rng.normal(labels[:, None] * 3.0, 1.0, size=(count, 8)), labels


def embeddings_of(classes: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    embeddings, labels = {}, {}
    for seed, split in enumerate(("train", "val", "test")):
        embeddings[split], labels[split] = separable_embeddings(90, seed, classes)
    return embeddings, labels


def test_baselines_learn_from_embeddings_and_the_report_shows_them(tmp_path):
    embeddings, labels = embeddings_of(2)
    card = binary_card(0.5)
    baselines = embedding_baselines(embeddings, labels, card, min_sensitivity=0.95, seed=0)
    assert set(baselines) == {"svm", "random_forest"}
    assert all(result.test.metrics.roc_auc > 0.95 for result in baselines.values())
    assert all(result.decision.positive_class == "pneumonia" for result in baselines.values())

    probabilities = np.stack([1 - labels["test"] * 0.8 - 0.1, labels["test"] * 0.8 + 0.1], axis=1)
    test = evaluate_split(card, labels["test"], probabilities)
    evaluation = Evaluation(
        title="unit",
        labels=list(CLASSES),
        decision=card.decision,
        calibration=None,
        val=test,
        test=test,
        uncalibrated_reliability={"test": reliability_bins(labels["test"], probabilities)},
        baselines=baselines,
        tsne=tsne_map(embeddings["train"], embeddings["test"], seed=0),
    )
    write_report(tmp_path, evaluation)

    assert {path.name for path in tmp_path.iterdir()} == {
        "report.json", "report.md", "roc.png", "reliability.png", "confusion.png", "tsne.png",
    }  # fmt: skip
    assert all((tmp_path / name).read_bytes().startswith(b"\x89PNG") for name in ("roc.png", "tsne.png"))
    markdown = (tmp_path / "report.md").read_text()
    for row in ("| model |", "| svm |", "| random_forest |", "![tsne](tsne.png)", "pneumonia when p(pneumonia) >="):
        assert row in markdown
    assert json.loads((tmp_path / "report.json").read_text())["test"]["ece"] == test.ece
    assert Evaluation.model_validate_json((tmp_path / "report.json").read_text()) == evaluation


def test_a_multiclass_report_decides_by_arg_max_and_has_no_roc(tmp_path):
    embeddings, labels = embeddings_of(3)
    card = card_for(("a", "b", "c"))
    baselines = embedding_baselines(embeddings, labels, card, min_sensitivity=0.95, seed=0)
    assert all(result.decision.threshold is None for result in baselines.values())
    test = baselines["svm"].test
    evaluation = Evaluation(
        title="three classes",
        labels=["a", "b", "c"],
        decision=card.decision,
        calibration=None,
        val=test,
        test=test,
        uncalibrated_reliability={},
        baselines=baselines,
    )
    write_report(tmp_path, evaluation)
    assert not (tmp_path / "roc.png").exists() and (tmp_path / "confusion.png").is_file()
    markdown = (tmp_path / "report.md").read_text()
    assert "Decision: arg-max class" in markdown and "macro_f1" in markdown
    assert "| c |" in markdown  # per-class table
