"""The evaluation report of a run: report.json, report.md and PNG plots (matplotlib, Agg).

Also the embedding baselines (seed 003: an SVM and a random forest trained on the CNN's
embeddings, evaluated on the same test split) and the t-SNE plot of train vs test
embeddings (seed 004).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from trainer.evaluate import choose_threshold, evaluate_predictions  # noqa: E402

REPORT_JSON, REPORT_MD = "report.json", "report.md"
MAX_BASELINE_TRAIN = 2000  # SVM fitting grows quadratically; a seeded subset is plenty for a baseline
MAX_TSNE_POINTS = 300  # per split


def embedding_baselines(embeddings: dict[str, np.ndarray], labels: dict[str, np.ndarray], config, class_names) -> dict:
    """SVM and random forest fitted on train embeddings, thresholds chosen on val, scored on test."""
    rng = np.random.default_rng(config.seed)
    rows = rng.permutation(len(labels["train"]))[:MAX_BASELINE_TRAIN]
    classifiers = {
        "svm": make_pipeline(StandardScaler(), SVC(probability=True, random_state=config.seed)),
        "random_forest": RandomForestClassifier(n_estimators=200, random_state=config.seed, n_jobs=2),
    }
    results = {}
    for name, classifier in classifiers.items():
        with warnings.catch_warnings():
            # SVC(probability=True) is deprecated from scikit-learn 1.9 for CalibratedClassifierCV,
            # whose cross-validation fails on classes with fewer members than folds (tiny sets).
            warnings.simplefilter("ignore", FutureWarning)
            classifier.fit(embeddings["train"][rows], labels["train"][rows])
        val, test = (
            _all_class_probabilities(classifier, embeddings[split], len(class_names)) for split in ("val", "test")
        )
        threshold = (
            choose_threshold(labels["val"], val[:, 1], config.min_sensitivity) if len(class_names) == 2 else None
        )
        results[name] = evaluate_predictions(labels["test"], test, class_names, threshold) | {"threshold": threshold}
    return results


def _all_class_probabilities(classifier, features: np.ndarray, num_classes: int) -> np.ndarray:
    """predict_proba with a column for every class, also those missing from the training subset."""
    probabilities = np.zeros((len(features), num_classes))
    probabilities[:, classifier.classes_] = classifier.predict_proba(features)
    return probabilities


def tsne_plot(train: np.ndarray, test: np.ndarray, seed: int, path: Path) -> None:
    rng = np.random.default_rng(seed)
    train = train[rng.permutation(len(train))[:MAX_TSNE_POINTS]]
    test = test[rng.permutation(len(test))[:MAX_TSNE_POINTS]]
    points = np.concatenate([train, test])
    perplexity = float(min(30, max(2, (len(points) - 1) // 3)))
    projected = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.scatter(*projected[: len(train)].T, s=6, alpha=0.6, label=f"train ({len(train)})")
    axes.scatter(*projected[len(train) :].T, s=6, alpha=0.6, label=f"test ({len(test)})")
    axes.set_title("t-SNE of the embeddings: train vs test")
    axes.legend()
    _save(figure, path)


def roc_plot(results: dict[str, dict], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(5, 5))
    for name, result in results.items():
        curve = result["roc_curve"]
        axes.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {result['metrics']['roc_auc']:.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC curve (test)")
    axes.legend(loc="lower right")
    _save(figure, path)


def reliability_plot(reliability: list[dict], ece: float, title: str, path: Path) -> None:
    bins = [row for row in reliability if row["count"]]
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.bar(
        [row["low"] for row in reliability],
        [row["accuracy"] if row["count"] else 0 for row in reliability],
        width=1 / len(reliability),
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    axes.plot(
        [row["confidence"] for row in bins], [row["accuracy"] for row in bins], "o", color="black", label="bin mean"
    )
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    axes.set(
        xlabel="confidence (top class)",
        ylabel="accuracy",
        title=f"{title}, ECE {ece:.3f}",
    )
    axes.legend(loc="upper left")
    _save(figure, path)


def confusion_plot(result: dict, class_names: tuple[str, ...], path: Path) -> None:
    matrix = np.asarray(result["confusion_matrix"])
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, str(count), ha="center", va="center")
    axes.set(
        xticks=range(len(class_names)),
        yticks=range(len(class_names)),
        xticklabels=class_names,
        yticklabels=class_names,
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix (test)",
    )
    _save(figure, path)


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def write_report(report_dir: Path, report: dict, class_names: tuple[str, ...], tsne: tuple | None = None) -> None:
    """report = {"title", "threshold", "test": result, "val": result, "baselines": {...}, "operating_point": {...}}."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    rows = {"model": report["test"], **report.get("baselines", {})}
    if "roc_curve" in report["test"]:
        roc_plot(rows, report_dir / "roc.png")
    calibration = report.get("calibration")
    if calibration is None:
        test = report["test"]
        plot = report_dir / "reliability.png"
        reliability_plot(test["reliability"], test["metrics"]["ece"], "Reliability (test)", plot)
    else:
        reliability_plot(
            calibration["reliability_before"]["test"],
            calibration["ece"]["test"]["before"],
            "Test, before calibration",
            report_dir / "reliability_before.png",
        )
        reliability_plot(
            report["test"]["reliability"],
            report["test"]["metrics"]["ece"],
            f"Test, after (T = {calibration['temperature']:.3f})",
            report_dir / "reliability.png",
        )
    confusion_plot(report["test"], class_names, report_dir / "confusion.png")
    if tsne is not None:
        tsne_plot(*tsne, report_dir / "tsne.png")
    (report_dir / REPORT_MD).write_text(markdown(report, rows, class_names, report_dir))


def markdown(report: dict, rows: dict[str, dict], class_names: tuple[str, ...], report_dir: Path) -> str:
    keys = [key for key in rows["model"]["metrics"] if key != "n"]
    lines = [
        f"# {report['title']}",
        "",
        f"Test split: {rows['model']['metrics']['n']} images. Decision: {_decision(report['threshold'])}.",
        "",
        "| model | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    lines += [
        f"| {name} | " + " | ".join(f"{result['metrics'][key]:.3f}" for key in keys) + " |"
        for name, result in rows.items()
    ]
    lines += [
        "",
        "Val (chose the threshold and the best epoch, so optimistic): "
        + ", ".join(f"{key} {report['val']['metrics'][key]:.3f}" for key in keys),
        "",
    ]
    if "operating_point" in report:
        point = report["operating_point"]
        lines += [
            f"Threshold for val sensitivity >= {point['target_sensitivity']}: {point['threshold']:.4f}; on test "
            f"sensitivity {point['test_sensitivity']:.3f}, specificity {point['test_specificity']:.3f} "
            f"(costs {point['specificity_cost']:.3f} specificity against the shipped threshold).",
            "",
        ]
    lines += calibration_lines(report.get("calibration")) + ood_lines(report.get("ood"))
    lines += ["## Per class (test)", "", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    lines += [
        f"| {name} | {values['precision']:.3f} | {values['recall']:.3f} | {values['f1-score']:.3f} | "
        f"{int(values['support'])} |"
        for name, values in rows["model"]["per_class"].items()
        if name in class_names
    ]
    lines += ["", "## Plots", ""]
    lines += [f"![{path.stem}]({path.name})" for path in sorted(report_dir.glob("*.png"))]
    return "\n".join(lines) + "\n"


def calibration_lines(calibration: dict | None) -> list[str]:
    if calibration is None:
        return []
    lines = [
        "## Calibration",
        "",
        f"Temperature scaling fitted on {calibration['fitted_on']} (NLL): T = {calibration['temperature']:.4f}; "
        "the metrics above are of the calibrated probabilities. ECE: 15 equal-width bins of the top-class confidence.",
        "",
        "| split | ECE before | ECE after |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {ece['before']:.4f} | {ece['after']:.4f} |" for name, ece in calibration["ece"].items()]
    return lines + [""]


def ood_lines(ood: dict | None) -> list[str]:
    if ood is None:
        return []
    metrics = ood["metrics"]
    lines = [
        "## Out-of-distribution guard",
        "",
        f"{ood['method']} distance of the embedding to the nearest class mean (statistics from "
        f"{ood['fitted_on']}); flagged above {ood['threshold']:.3f} (set on {ood['threshold_on']}).",
        "",
        f"AUROC test (in, {metrics['n_in']}) vs out-of-distribution images ({metrics['n_out']}): "
        f"{metrics['auroc']:.4f}; test images flagged: {metrics['test_false_flag_rate']:.4f}"
        + (f"; val flagged: {metrics['val_flag_rate']:.4f}" if "val_flag_rate" in metrics else "")
        + ".",
        "",
        "| out-of-distribution kind | images | flagged |",
        "|---|---|---|",
    ]
    lines += [
        f"| {kind} | {metrics['out_count_by_kind'][kind]} | {rate:.3f} |"
        for kind, rate in metrics["out_flag_rate_by_kind"].items()
    ]
    return lines + [""]


def _decision(threshold: float | None) -> str:
    return "arg-max class" if threshold is None else f"p(positive) >= {threshold:.4f}"
