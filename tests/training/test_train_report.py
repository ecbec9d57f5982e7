"""The report: JSON, Markdown naming the model and the embedding baselines, and PNG plots (scikit-learn's
displays from the per-image test scores, learning curves, the guard's scores by source, t-SNE by class
and source, the worst errors)."""

import json

import numpy as np
from training_support import binary_card, card_for

from trainer.baselines import Embedded, embedding_baselines, tsne_map
from trainer.evaluate import Evaluation, PerImageScores
from trainer.gallery import worst_error_gallery
from trainer.metrics import evaluate_split, reliability_bins
from trainer.report import write_report
from trainer.trust import OodEvaluation, ood_metrics

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
    probabilities[:3] = probabilities[:3, ::-1]  # three confident errors
    test = evaluate_split(card, labels["test"], probabilities)
    sources = np.where(np.arange(90) % 3 == 0, "hospital-a", "hospital-b")
    scores = PerImageScores(
        label_ids=labels["test"].tolist(),
        decided_ids=(probabilities[:, 1] >= 0.5).astype(int).tolist(),
        probabilities=probabilities.tolist(),
        sources=sources.tolist(),
    )
    test_scores = np.random.default_rng(0).gamma(4.0, 1.0, 90)
    out_scores = {"blank": np.full(5, 40.0)}
    ood = OodEvaluation(
        threshold=8.0,
        metrics=ood_metrics(test_scores, out_scores, 8.0),
        scores={"test: hospital-a": test_scores[:30].tolist(), "test: hospital-b": test_scores[30:].tolist()}
        | {"blank": out_scores["blank"].tolist()},
    )
    mapped = {name: Embedded(embeddings[name], labels[name], sources) for name in ("train", "test")}
    evaluation = Evaluation(
        title="unit",
        labels=list(CLASSES),
        decision=card.decision,
        calibration=None,
        val=test,
        test=test,
        uncalibrated_reliability={"test": reliability_bins(labels["test"], probabilities)},
        baselines=baselines,
        tsne=tsne_map(mapped, CLASSES, seed=0),
        test_images=scores,
        history={
            "loss": [0.7, 0.5, 0.4],
            "val_loss": [0.72, 0.6, 0.61],
            "auc": [0.6, 0.8, 0.9],
            "val_auc": [0.6, 0.7, 0.7],
        },
        best_epoch=2,
        ood=ood,
    )
    images = np.random.default_rng(1).uniform(0, 255, (90, 16, 16, 1))
    heatmaps = np.random.default_rng(2).normal(size=(90, 2, 4, 4))
    gallery = worst_error_gallery(scores, images, CLASSES, lambda batch: heatmaps[: len(batch)])
    write_report(tmp_path, evaluation, gallery)

    plots = {"roc", "precision_recall", "threshold", "calibration", "reliability", "confusion", "learning_curves",
             "ood_scores", "tsne", "worst_errors"}  # fmt: skip
    assert {path.name for path in tmp_path.iterdir()} == {"report.json", "report.md"} | {f"{n}.png" for n in plots}
    assert all((tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG") for name in plots)
    markdown = (tmp_path / "report.md").read_text()
    for row in ("| model |", "| svm |", "| random_forest |", "![tsne](tsne.png)", "pneumonia when p(pneumonia) >="):
        assert row in markdown
    assert [line for line in markdown.splitlines() if line[:2] in ("1.", "2.", "3.", "4.")] == [
        "1. true pneumonia (hospital-b); given normal, p 0.90",  # p(true) 1 - 0.8 - 0.1 < 0.1 in floating point
        "2. true normal (hospital-a); given pneumonia, p 0.90",
        "3. true normal (hospital-b); given pneumonia, p 0.90",
    ]  # fmt: skip
    assert json.loads((tmp_path / "report.json").read_text())["test"]["ece"] == test.ece
    assert Evaluation.model_validate_json((tmp_path / "report.json").read_text()) == evaluation


def test_the_worst_errors_are_the_lowest_probability_of_the_true_label_first():
    scores = PerImageScores(
        label_ids=[1, 0, 1, 0, 1],
        decided_ids=[0, 0, 0, 1, 1],
        probabilities=[[0.6, 0.4], [0.9, 0.1], [0.95, 0.05], [0.3, 0.7], [0.2, 0.8]],
    )
    assert scores.worst_errors(5) == [2, 3, 0]
    assert scores.worst_errors(2) == [2, 3]
    images = np.zeros((5, 8, 8, 3))
    gallery = worst_error_gallery(scores, images, ("a", "b"), lambda batch: None, count=1)
    assert [(item.caption, item.heatmap, item.image.shape) for item in gallery] == [
        ("true b\ngiven a, p 0.95", None, (8, 8))
    ]


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
