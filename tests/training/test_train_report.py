"""The report: JSON, Markdown naming the model and the embedding baselines, and PNG plots."""

import json

import numpy as np

from trainer.config import TrainConfig
from trainer.evaluate import evaluate_predictions
from trainer.report import embedding_baselines, write_report

CLASSES = ("normal", "pneumonia")


def separable_embeddings(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    return rng.normal(labels[:, None] * 3.0, 1.0, size=(count, 8)), labels


def test_baselines_learn_from_embeddings_and_the_report_shows_them(tmp_path):
    embeddings, labels = {}, {}
    for seed, split in enumerate(("train", "val", "test")):
        embeddings[split], labels[split] = separable_embeddings(80, seed)
    baselines = embedding_baselines(embeddings, labels, TrainConfig(), CLASSES)
    assert set(baselines) == {"svm", "random_forest"}
    assert all(result["metrics"]["roc_auc"] > 0.95 for result in baselines.values())

    probabilities = np.stack([1 - labels["test"] * 0.8 - 0.1, labels["test"] * 0.8 + 0.1], axis=1)
    test = evaluate_predictions(labels["test"], probabilities, CLASSES, threshold=0.5)
    report = {"title": "unit", "threshold": 0.5, "test": test, "val": test, "baselines": baselines}
    write_report(tmp_path, report, CLASSES, tsne=(embeddings["train"], embeddings["test"], 0))

    assert {path.name for path in tmp_path.iterdir()} == {
        "report.json", "report.md", "roc.png", "reliability.png", "confusion.png", "tsne.png",
    }  # fmt: skip
    assert all((tmp_path / name).read_bytes().startswith(b"\x89PNG") for name in ("roc.png", "tsne.png"))
    markdown = (tmp_path / "report.md").read_text()
    for row in ("| model |", "| svm |", "| random_forest |", "![tsne](tsne.png)"):
        assert row in markdown
    assert json.loads((tmp_path / "report.json").read_text())["test"]["metrics"]["ece"] == test["metrics"]["ece"]
