"""The evaluation report: report.json (the `Evaluation`), report.md and PNG plots (matplotlib, Agg).

The curves are scikit-learn's display classes, drawn from the per-image test scores the
evaluation keeps (`Evaluation.test_images`) or from the curves and matrices it stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay, roc_curve

from cxr_model.card import Calibration, Decision
from trainer.baselines import TsneMap
from trainer.evaluate import Evaluation, PerImageScores
from trainer.gallery import GalleryImage
from trainer.metrics import BinaryMetrics, Metrics, ReliabilityBin, SplitEvaluation
from trainer.trust import OodEvaluation, OodMetrics

REPORT_JSON, REPORT_MD = "report.json", "report.md"
CALIBRATION_BINS = 10
LEARNING_CURVES = ("loss", "auc", "accuracy")  # Keras' history names, each with its val_ twin


def write_report(report_dir: Path, evaluation: Evaluation, gallery: Sequence[GalleryImage] = ()) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / REPORT_JSON).write_text(evaluation.model_dump_json(indent=2) + "\n")
    rows = {"model": evaluation.test} | {name: baseline.test for name, baseline in evaluation.baselines.items()}
    plots = draw_plots(report_dir, evaluation, rows, gallery)
    (report_dir / REPORT_MD).write_text(markdown(evaluation, rows, plots, gallery))


def draw_plots(
    report_dir: Path, evaluation: Evaluation, rows: dict[str, SplitEvaluation], gallery: Sequence[GalleryImage]
) -> dict[str, str]:
    """Every plot the evaluation has the data for: file name -> what it shows."""
    plots: dict[str, str] = {}
    test = evaluation.test
    if test.roc_curve is not None:
        roc_plot(rows, test.metrics, evaluation.decision.threshold, report_dir / "roc.png")
        plots["roc.png"] = "ROC, the shipped threshold marked"
    binary_scores = positive_scores(evaluation)
    if binary_scores is not None:
        truth, scores = binary_scores
        precision_recall_plot(
            truth, scores, test.metrics, evaluation.decision.threshold, report_dir / "precision_recall.png"
        )
        threshold_plot(truth, scores, evaluation.decision.threshold, report_dir / "threshold.png")
        calibration_plot(truth, scores, evaluation.decision.positive_class or "", report_dir / "calibration.png")
        plots |= {
            "precision_recall.png": "precision-recall, the shipped threshold marked",
            "threshold.png": "sensitivity and specificity against the threshold",
            "calibration.png": "calibration of the positive class's probability, with the images per bin",
        }
    plots |= reliability_plots(evaluation, report_dir)
    confusion_plot(test, evaluation.labels, report_dir / "confusion.png")
    plots["confusion.png"] = "confusion matrix: counts and rates"
    if evaluation.history:
        learning_curves_plot(evaluation.history, evaluation.best_epoch, report_dir / "learning_curves.png")
        plots["learning_curves.png"] = "learning curves (train and val, per epoch)"
    if evaluation.ood is not None and evaluation.ood.scores:
        ood_histogram_plot(evaluation.ood, report_dir / "ood_scores.png")
        plots["ood_scores.png"] = "unusual-image score by source, and of images that are no chest image"
    if evaluation.tsne is not None:
        tsne_plot(evaluation.tsne, report_dir / "tsne.png")
        plots["tsne.png"] = "t-SNE of the embeddings by class and by source"
    if gallery:
        gallery_plot(gallery, report_dir / "worst_errors.png")
        plots["worst_errors.png"] = "the worst errors with their heatmaps"
    return plots


def positive_scores(evaluation: Evaluation) -> tuple[np.ndarray, np.ndarray] | None:
    """A binary model's test truth and calibrated p(positive class), when the evaluation kept them."""
    images: PerImageScores | None = evaluation.test_images
    if images is None or evaluation.decision.positive_class is None:
        return None
    return np.asarray(images.label_ids), np.asarray(images.probabilities)[:, 1]


def roc_plot(rows: dict[str, SplitEvaluation], shipped: Metrics, threshold: float | None, path: Path) -> None:
    """Every model's ROC, the model's shipped operating point marked."""
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for name, result in rows.items():
        if result.roc_curve is not None:
            curve = result.roc_curve
            display = RocCurveDisplay(
                fpr=np.asarray(curve.fpr), tpr=np.asarray(curve.tpr), roc_auc=result.metrics.roc_auc
            )
            display.plot(ax=axes, name=name, plot_chance_level=name == "model")
    if isinstance(shipped, BinaryMetrics):
        mark_shipped_threshold(axes, 1 - shipped.specificity, shipped.sensitivity, threshold)
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (test)")
    axes.legend(loc="lower right", fontsize=8)
    _save(figure, path)


def precision_recall_plot(
    truth: np.ndarray, scores: np.ndarray, shipped: Metrics, threshold: float | None, path: Path
) -> None:
    figure, axes = plt.subplots(figsize=(5.5, 5))
    PrecisionRecallDisplay.from_predictions(truth, scores, ax=axes, name="model", plot_chance_level=True)
    if isinstance(shipped, BinaryMetrics):
        mark_shipped_threshold(axes, shipped.sensitivity, shipped.precision, threshold)
    axes.set(xlabel="recall (sensitivity)", ylabel="precision", title="Precision-recall (test)")
    axes.legend(loc="lower left", fontsize=8)
    _save(figure, path)


def mark_shipped_threshold(axes: Any, x: float, y: float, threshold: float | None) -> None:
    label = "shipped threshold" if threshold is None else f"shipped threshold {threshold:.3f}"
    axes.plot(x, y, "o", color="red", markersize=8, label=label)


def threshold_plot(truth: np.ndarray, scores: np.ndarray, threshold: float | None, path: Path) -> None:
    """Sensitivity and specificity on test at every threshold on p(positive)."""
    fpr, tpr, thresholds = roc_curve(truth, scores)
    inside = np.isfinite(thresholds)
    figure, axes = plt.subplots(figsize=(5.5, 4))
    axes.plot(thresholds[inside], tpr[inside], drawstyle="steps-post", label="sensitivity")
    axes.plot(thresholds[inside], 1 - fpr[inside], drawstyle="steps-post", label="specificity")
    if threshold is not None:
        axes.axvline(threshold, color="red", linestyle="--", label=f"shipped threshold {threshold:.3f}")
    axes.set(xlabel="threshold on p(positive class)", ylabel="rate", xlim=(0, 1), ylim=(0, 1.02))
    axes.set_title("Sensitivity and specificity vs threshold (test)")
    axes.legend(loc="center right", fontsize=8)
    _save(figure, path)


def calibration_plot(truth: np.ndarray, scores: np.ndarray, positive: str, path: Path) -> None:
    """The calibration curve of p(positive) and, below it, how many test images fall in each bin."""
    figure, (curve, counts) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=(3, 1.3), sharex=True)
    CalibrationDisplay.from_predictions(truth, scores, n_bins=CALIBRATION_BINS, ax=curve, name="model")
    curve.set(xlabel="", ylabel=f"fraction {positive}", title=f"Calibration of p({positive}) (test)")
    heights, _edges, bars = counts.hist(scores, bins=CALIBRATION_BINS, range=(0, 1), edgecolor="black")
    counts.bar_label(bars, labels=[str(int(height)) for height in heights], fontsize=7)
    counts.set(xlabel=f"p({positive}), calibrated", ylabel="images")
    _save(figure, path)


def learning_curves_plot(history: dict[str, list[float]], best_epoch: int | None, path: Path) -> None:
    """Per epoch, each figure Keras kept on train and on val; the epoch whose weights were kept marked."""
    names = [name for name in LEARNING_CURVES if name in history]
    figure, axes_row = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8), squeeze=False)
    for axes, name in zip(axes_row[0], names, strict=True):
        epochs = np.arange(1, len(history[name]) + 1)
        axes.plot(epochs, history[name], label="train")
        if f"val_{name}" in history:
            axes.plot(epochs, history[f"val_{name}"], label="val")
        if best_epoch is not None:
            axes.axvline(best_epoch, color="grey", linestyle="--", label=f"kept (epoch {best_epoch})")
        axes.set(xlabel="epoch", title=name)
        axes.legend(fontsize=8)
    _save(figure, path)


def ood_histogram_plot(ood: OodEvaluation, path: Path) -> None:
    """The unusual-image score of the test images by source and of each out-of-distribution kind."""
    everything = np.concatenate([np.asarray(scores, dtype=float) for scores in ood.scores.values()])
    low, high = max(float(everything.min()), 1e-3), max(float(everything.max()), ood.threshold * 1.1)
    bins = np.geomspace(low, high, 40).tolist()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, scores in ood.scores.items():
        axes.hist(
            np.clip(scores, low, high), bins=bins, histtype="step", linewidth=1.5, label=f"{name} ({len(scores)})"
        )
    axes.axvline(ood.threshold, color="red", linestyle="--", label=f"flagged above {ood.threshold:.2f}")
    axes.set(xscale="log", xlabel="unusual-image score (Mahalanobis distance)", ylabel="images")
    axes.set_title("Unusual-image score by source")
    axes.legend(fontsize=7, loc="upper right")
    _save(figure, path)


def tsne_plot(tsne: TsneMap, path: Path) -> None:
    """The map twice: coloured by class and by source; train as dots, test as crosses."""
    colourings = {"class": tsne.classes} | ({} if tsne.sources is None else {"source": tsne.sources})
    points, splits = np.asarray(tsne.points), np.asarray(tsne.splits)
    figure, axes_row = plt.subplots(1, len(colourings), figsize=(5.5 * len(colourings), 5), squeeze=False)
    for axes, (by, values) in zip(axes_row[0], colourings.items(), strict=True):
        values_array = np.asarray(values)
        for colour, value in enumerate(sorted(set(values))):
            for split, marker in (("train", "o"), ("test", "x")):
                chosen = (values_array == value) & (splits == split)
                if chosen.any():
                    x, y = points[chosen].T
                    label = f"{value}, {split} ({int(chosen.sum())})"
                    axes.scatter(x, y, s=8, marker=marker, color=f"C{colour % 10}", alpha=0.6, label=label)
        axes.set_title(f"t-SNE of the embeddings, by {by}")
        axes.legend(fontsize=7, markerscale=1.5)
    _save(figure, path)


def gallery_plot(gallery: Sequence[GalleryImage], path: Path) -> None:
    """The worst errors, each with the heatmap of the label given over it."""
    columns = min(4, len(gallery))
    rows = -(-len(gallery) // columns)
    figure, axes_grid = plt.subplots(rows, columns, figsize=(3 * columns, 3.6 * rows), squeeze=False)
    for axes in axes_grid.flat:
        axes.axis("off")
    for axes, item in zip(axes_grid.flat, gallery, strict=False):
        height, width = item.image.shape
        axes.imshow(item.image, cmap="gray", extent=(0, width, height, 0))
        if item.heatmap is not None:
            axes.imshow(item.heatmap, cmap="jet", alpha=0.35, extent=(0, width, height, 0), interpolation="bilinear")
        axes.set_title(item.caption, fontsize=8)
    figure.suptitle("Worst errors (test): lowest probability of the true label")
    _save(figure, path)


def reliability_plots(evaluation: Evaluation, report_dir: Path) -> dict[str, str]:
    test = evaluation.test
    if evaluation.calibration is None:
        reliability_plot(test.reliability, test.ece, "Reliability (test)", report_dir / "reliability.png")
        return {"reliability.png": "reliability of the top-class confidence"}
    before = evaluation.calibration.ece["test"]["before"]
    uncalibrated = evaluation.uncalibrated_reliability["test"]
    reliability_plot(uncalibrated, before, "Test, before calibration", report_dir / "reliability_before.png")
    title = f"Test, after (T = {evaluation.calibration.temperature:.3f})"
    reliability_plot(test.reliability, test.ece, title, report_dir / "reliability.png")
    return {
        "reliability_before.png": "reliability of the top-class confidence before calibration",
        "reliability.png": "reliability of the top-class confidence after calibration (as served)",
    }


def reliability_plot(reliability: list[ReliabilityBin], ece: float, title: str, path: Path) -> None:
    """Top-class confidence vs accuracy (what the ECE measures), each bin's image count on its bar."""
    bins = [row for row in reliability if row.count]
    figure, axes = plt.subplots(figsize=(5, 5))
    bars = axes.bar(
        [row.low for row in reliability],
        [row.accuracy if row.count else 0 for row in reliability],
        width=1 / len(reliability),
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    axes.bar_label(bars, labels=[str(row.count) if row.count else "" for row in reliability], fontsize=6)
    axes.plot([row.confidence for row in bins], [row.accuracy for row in bins], "o", color="black", label="bin mean")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    axes.set(
        xlabel="confidence (top class)",
        ylabel="accuracy",
        title=f"{title}, ECE {ece:.3f}",
    )
    axes.legend(loc="upper left")
    _save(figure, path)


def confusion_plot(result: SplitEvaluation, labels: list[str], path: Path) -> None:
    """Counts, and rates per true class (each row sums to 1: the per-class recall on the diagonal)."""
    matrix = np.asarray(result.confusion_matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = 3 + 1.2 * len(labels)
    figure, (counts, normalised) = plt.subplots(1, 2, figsize=(2 * size, size))
    ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=counts, cmap="Blues", colorbar=False)
    ConfusionMatrixDisplay(rates, display_labels=labels).plot(
        ax=normalised, cmap="Blues", colorbar=False, values_format=".2f"
    )
    counts.set_title("Confusion matrix (test): counts")
    normalised.set_title("rates per true class")
    _save(figure, path)


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def markdown(
    evaluation: Evaluation, rows: dict[str, SplitEvaluation], plots: dict[str, str], gallery: Sequence[GalleryImage]
) -> str:
    test = evaluation.test
    keys = list(table_row(test))
    lines = [
        f"# {evaluation.title}",
        "",
        f"Test split: {test.metrics.n} images. Decision: {decision_text(evaluation.decision)}.",
        "",
        "| model | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    lines += [
        f"| {name} | " + " | ".join(f"{table_row(result).get(key, float('nan')):.3f}" for key in keys) + " |"
        for name, result in rows.items()
    ]
    val = table_row(evaluation.val)
    lines += [
        "",
        "Val (chose the decision and the best epoch, so optimistic): "
        + ", ".join(f"{key} {value:.3f}" for key, value in val.items()),
        "",
    ]
    lines += interval_lines(evaluation.intervals.get("test", {}), table_row(test))
    lines += operating_point_lines(evaluation)
    lines += calibration_lines(evaluation.calibration) + ece_floor_lines(evaluation)
    lines += ood_lines(evaluation.ood)
    lines += ["## Per class (test)", "", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    lines += [
        f"| {label} | {row.precision:.3f} | {row.recall:.3f} | {row.f1:.3f} | {row.support} |"
        for label, row in test.per_class.items()
    ]
    lines += gallery_lines(gallery)
    lines += ["", "## Plots", ""]
    lines += [f"- {what}: ![{Path(name).stem}]({name})" for name, what in plots.items()]
    if not evaluation.history:
        lines.append("- learning curves: not drawn, this evaluation has no training history (model cards keep it")
        lines.append("  in `training.history` since the trainer records it; a new training run draws them)")
    return "\n".join(lines) + "\n"


def gallery_lines(gallery: Sequence[GalleryImage]) -> list[str]:
    if not gallery:
        return []
    lines = [
        "",
        "## Worst errors (test)",
        "",
        "The lowest probability of the true label first (`worst_errors.png`):",
        "",
    ]
    return lines + [f"{number}. " + item.caption.replace("\n", "; ") for number, item in enumerate(gallery, 1)]


def table_row(result: SplitEvaluation) -> dict[str, float]:
    """The overall figures of one split (the per-class ones have their own table)."""
    pr_auc = {} if result.pr_auc is None else {"pr_auc": result.pr_auc}
    return result.metrics.summary() | pr_auc | {"ece": result.ece}


def interval_lines(intervals: dict[str, tuple[float, float]], values: dict[str, float]) -> list[str]:
    """The test figures with their bootstrap 95% confidence intervals."""
    if not intervals:
        return []
    lines = ["## 95% confidence intervals (test, bootstrap)", "", "| metric | value | 95% CI |", "|---|---|---|"]
    lines += [
        f"| {name} | {values[name]:.3f} | {low:.3f} – {high:.3f} |"
        for name, (low, high) in intervals.items()
        if name in values
    ]
    return [*lines, ""]


def decision_text(decision: Decision) -> str:
    if decision.positive_class is None or decision.threshold is None:
        return "arg-max class"
    return f"{decision.positive_class} when p({decision.positive_class}) >= {decision.threshold:.4f}"


def operating_point_lines(evaluation: Evaluation) -> list[str]:
    point, positive = evaluation.operating_point, evaluation.decision.positive_class
    if point is None:
        return []
    return [
        f"Threshold on p({positive}) for val sensitivity >= {point.target_sensitivity}: {point.threshold:.4f}; "
        f"on test sensitivity {point.test_sensitivity:.3f}, specificity {point.test_specificity:.3f} "
        f"(costs {point.specificity_cost:.3f} specificity against the shipped threshold).",
        "",
    ]


def calibration_lines(calibration: Calibration | None) -> list[str]:
    if calibration is None:
        return []
    lines = [
        "## Calibration",
        "",
        f"Temperature scaling fitted on {calibration.fitted_on} (NLL): T = {calibration.temperature:.4f}; "
        "the metrics above are of the calibrated probabilities. ECE: 15 equal-width bins of the top-class confidence.",
        "",
        "| split | ECE before | ECE after |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {ece['before']:.4f} | {ece['after']:.4f} |" for name, ece in calibration.ece.items()]
    return [*lines, ""]


def ece_floor_lines(evaluation: Evaluation) -> list[str]:
    floors = evaluation.ece_of_perfect_calibration
    if not floors:
        return []
    measured = {"val": evaluation.val.ece, "test": evaluation.test.ece}
    lines = [
        "How far the ECE can go down on splits of this size: a perfectly calibrated model with these "
        "probabilities (each label drawn from them, 200 draws) would measure, on average and at the 95th "
        "percentile:",
        "",
        "| split | ECE measured | perfectly calibrated: mean | 95th percentile |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {measured[name]:.4f} | {mean:.4f} | {high:.4f} |" for name, (mean, high) in floors.items()]
    return [*lines, ""]


def ood_lines(ood: OodEvaluation | None) -> list[str]:
    if ood is None:
        return []
    metrics = ood.metrics
    val_flagged = "" if metrics.val_flag_rate is None else f"; val flagged: {metrics.val_flag_rate:.4f}"
    lines = [
        "## Out-of-distribution guard",
        "",
        f"{ood.method} distance of the embedding to the nearest class mean (statistics from "
        f"{ood.fitted_on}); flagged above {ood.threshold:.3f} (set on {ood.threshold_on}).",
        "",
        f"AUROC test (in, {metrics.n_in}) vs out-of-distribution images ({metrics.n_out}): "
        f"{metrics.auroc:.4f}; test images flagged: {metrics.test_false_flag_rate:.4f}{val_flagged}.",
        "",
        "| out-of-distribution kind | images | flagged |",
        "|---|---|---|",
    ]
    lines += [
        f"| {kind} | {metrics.out_count_by_kind[kind]} | {rate:.3f} |"
        for kind, rate in metrics.out_flag_rate_by_kind.items()
    ]
    return [*lines, "", *flagged_test_lines(metrics)]


def flagged_test_lines(metrics: OodMetrics) -> list[str]:
    """Whether the flag singles out wrong answers, and whom it flags, among the test images."""
    lines = []
    if metrics.test_flagged is not None:
        accuracy = {"flagged": metrics.test_accuracy_flagged, "unflagged": metrics.test_accuracy_unflagged}
        lines += [
            f"Test images flagged: {metrics.test_flagged} of {metrics.n_in}; accuracy on them "
            + ", on the unflagged: ".join("-" if value is None else f"{value:.3f}" for value in accuracy.values())
            + ".",
            "",
        ]
    if metrics.test_flag_rate_by_source:
        lines += ["| test source | flagged |", "|---|---|"]
        lines += [f"| {source} | {rate:.3f} |" for source, rate in metrics.test_flag_rate_by_source.items()]
        lines.append("")
    return lines
