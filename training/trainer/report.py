"""The evaluation report: report.json (the `Evaluation`), report.md and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from cxr_model.card import Calibration, Decision
from trainer.baselines import TsneMap
from trainer.evaluate import Evaluation
from trainer.metrics import ReliabilityBin, SplitEvaluation
from trainer.trust import OodEvaluation, OodMetrics

REPORT_JSON, REPORT_MD = "report.json", "report.md"


def write_report(report_dir: Path, evaluation: Evaluation) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / REPORT_JSON).write_text(evaluation.model_dump_json(indent=2) + "\n")
    rows = {"model": evaluation.test} | {name: baseline.test for name, baseline in evaluation.baselines.items()}
    if evaluation.test.roc_curve is not None:
        roc_plot(rows, report_dir / "roc.png")
    reliability_plots(evaluation, report_dir)
    confusion_plot(evaluation.test, evaluation.labels, report_dir / "confusion.png")
    if evaluation.tsne is not None:
        tsne_plot(evaluation.tsne, report_dir / "tsne.png")
    (report_dir / REPORT_MD).write_text(markdown(evaluation, rows, report_dir))


def tsne_plot(tsne: TsneMap, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(5, 5))
    for name, points in (("train", tsne.train), ("test", tsne.test)):
        x, y = np.asarray(points).T
        axes.scatter(x, y, s=6, alpha=0.6, label=f"{name} ({len(points)})")
    axes.set_title("t-SNE of the embeddings: train vs test")
    axes.legend()
    _save(figure, path)


def roc_plot(rows: dict[str, SplitEvaluation], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(5, 5))
    for name, result in rows.items():
        if result.roc_curve is not None:
            auc = result.metrics.roc_auc or 0.0
            axes.plot(result.roc_curve.fpr, result.roc_curve.tpr, label=f"{name} (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC curve (test)")
    axes.legend(loc="lower right")
    _save(figure, path)


def reliability_plots(evaluation: Evaluation, report_dir: Path) -> None:
    test = evaluation.test
    if evaluation.calibration is None:
        reliability_plot(test.reliability, test.ece, "Reliability (test)", report_dir / "reliability.png")
        return
    before = evaluation.calibration.ece["test"]["before"]
    uncalibrated = evaluation.uncalibrated_reliability["test"]
    reliability_plot(uncalibrated, before, "Test, before calibration", report_dir / "reliability_before.png")
    title = f"Test, after (T = {evaluation.calibration.temperature:.3f})"
    reliability_plot(test.reliability, test.ece, title, report_dir / "reliability.png")


def reliability_plot(reliability: list[ReliabilityBin], ece: float, title: str, path: Path) -> None:
    bins = [row for row in reliability if row.count]
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.bar(
        [row.low for row in reliability],
        [row.accuracy if row.count else 0 for row in reliability],
        width=1 / len(reliability),
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
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
    matrix = np.asarray(result.confusion_matrix)
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, str(count), ha="center", va="center")
    axes.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix (test)",
    )
    _save(figure, path)


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def markdown(evaluation: Evaluation, rows: dict[str, SplitEvaluation], report_dir: Path) -> str:
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
    lines += calibration_lines(evaluation.calibration) + ood_lines(evaluation.ood)
    lines += ["## Per class (test)", "", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    lines += [
        f"| {label} | {row.precision:.3f} | {row.recall:.3f} | {row.f1:.3f} | {row.support} |"
        for label, row in test.per_class.items()
    ]
    lines += ["", "## Plots", ""]
    lines += [f"![{path.stem}]({path.name})" for path in sorted(report_dir.glob("*.png"))]
    return "\n".join(lines) + "\n"


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
