"""Leave-one-source-out figures of the adult chest X-ray model, written into its card and report.

    python training/held_out_sources.py --model-dir models/pneumonia-xray-adult/1 \\
        --held-out ieee8023=/tmp/adult/repo/held-out-ieee8023/1 \\
        --held-out nih=/tmp/adult/repo/held-out-nih/1 \\
        --held-out rsna-normal,ieee8023=/tmp/adult/repo/held-out-rsna-normal+ieee8023/1

Each `--held-out SOURCES=MODEL_DIR` is a model trained with the shipped recipe on the label file
`prepare_adult_cxr.py --hold-out SOURCES` writes: the sources named are its whole test split, so
its test figures are those of hospitals it never saw. For each, its ONNX model is evaluated again
(report in `<report-dir>/held-out-<sources>/`) and the card of the shipped model gets
`metrics["held_out_<sources>"]` and `metrics_ci[...]` (bootstrap 95%).

The unusual-image guard is calibrated on held-out sources: in each run, k = the 95th percentile of
the held-out source's scores / the 99.5th percentile of its own val scores (how much further a
genuine X-ray of a new hospital lies than the hospitals it knows). The shipped threshold is the
largest k of the runs (at least 1) times the shipped model's own 99.5th val percentile; each run's flag rate
is reported with the k of the *other* runs (so the source it is measured on did not set it).
Then the shipped model is evaluated again with that threshold (report in `--report-dir`, OOD
figures and confidence intervals into the card), and its intended use is written from
`--intended-use` with the measured limits added.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from prepare_adult_cxr import COLUMNS, label_rows

from cxr_model.answer import calibrated
from cxr_model.card import ONNX_FILE, ModelCard
from cxr_model.intended_use import IntendedUse
from trainer.config import REPO_ROOT, TrainConfig, default_data_dir
from trainer.data import Dataset, load_dataset
from trainer.decision import decided_label_ids
from trainer.evaluate import Evaluation
from trainer.export import onnx_outputs
from trainer.pipeline import evaluate_model_dir

VAL_QUANTILE = 0.995  # the in-distribution rule: this share of val stays unflagged
HELD_OUT_QUANTILE = 0.95  # the held-out calibration: this share of a new hospital's X-rays stays unflagged
ACCURACY_FLAGGED = ("accuracy_flagged", "accuracy_unflagged")
SOURCE_NAMES = {
    "nih": "NIH ChestX-ray14 (normal and pneumonia)",
    "rsna-normal": "RSNA normals",
    "ieee8023": "COVID-19 image data collection (hospitals worldwide)",
}


@dataclass(frozen=True)
class Scored:
    """A model's outputs on its val and test splits."""

    dataset: Dataset
    val_ood: np.ndarray
    test_ood: np.ndarray
    test_correct: np.ndarray

    @property
    def ratio(self) -> float:
        """How far the test split's scores lie beyond val's: q95(test) / q99.5(val)."""
        return float(np.quantile(self.test_ood, HELD_OUT_QUANTILE) / np.quantile(self.val_ood, VAL_QUANTILE))

    def flag_figures(self, scale: float) -> dict[str, float]:
        """The share flagged with the threshold `scale` x val's 99.5th percentile, and the accuracy on the flagged
        and unflagged images (left out where there are none: the card holds numbers only)."""
        flagged = self.test_ood > scale * np.quantile(self.val_ood, VAL_QUANTILE)
        figures = {"ood_threshold_scale": scale, "flagged_rate": float(flagged.mean())}
        for key, chosen in zip(ACCURACY_FLAGGED, (flagged, ~flagged), strict=True):
            if chosen.any():
                figures[key] = float(self.test_correct[chosen].mean())
        return figures


def label_file(held_out: tuple[str, ...], data_dir: Path, folder: Path) -> Path:
    path = folder / f"labels-{'+'.join(held_out) or 'shipped'}.csv"
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(label_rows(data_dir, held_out))
    return path


def card_config(card: ModelCard, data_dir: Path, labels_csv: Path) -> TrainConfig:
    return replace(TrainConfig.from_json_dict(card.training["config"]), data_dir=data_dir, labels_csv=labels_csv)


def scored(model_dir: Path, config: TrainConfig) -> Scored:
    card = ModelCard.read(model_dir)
    assert card.ood is not None, f"{model_dir}: the card has no OOD guard"
    dataset = load_dataset(config)
    model = (model_dir / ONNX_FILE).read_bytes()
    names = ["probabilities", card.ood.output]
    val, test = (onnx_outputs(model, split.images, names) for split in (dataset.val, dataset.test))
    correct = decided_label_ids(card, calibrated(card, test["probabilities"])) == dataset.test.label_ids
    return Scored(dataset, val[card.ood.output], test[card.ood.output], correct)


def held_out_figures(evaluation: Evaluation, flags: dict[str, float]) -> dict[str, float]:
    test = evaluation.test
    return test.metrics.for_card() | {"ece": test.ece} | flags


def limits_text(name: str, figures: dict[str, float], intervals: dict[str, tuple[float, float]]) -> str:
    def with_ci(metric: str) -> str:
        low, high = intervals.get(metric, (float("nan"), float("nan")))
        return f"{figures[metric]:.2f} (95% CI {low:.2f}-{high:.2f})"

    sources = " + ".join(SOURCE_NAMES[source] for source in name.split("+"))
    return (
        f"On a source it never saw ({sources}; a model trained the same way without it, {int(figures['n'])} "
        f"images): ROC AUC {with_ci('roc_auc')}, sensitivity {with_ci('sensitivity')}, specificity "
        f"{with_ci('specificity')}, ECE {figures['ece']:.3f}; flagged unusual: {figures['flagged_rate']:.0%} "
        f"(accuracy flagged {figures.get('accuracy_flagged', float('nan')):.2f}, "
        f"unflagged {figures.get('accuracy_unflagged', float('nan')):.2f})."
    )


TARGETS = {"roc_auc": 0.85, "sensitivity": 0.85, "specificity": 0.70}
COLUMNS_SHOWN = ("roc_auc", "sensitivity", "specificity", "accuracy", "ece")
Intervals = dict[str, dict[str, tuple[float, float]]]


def figure_cell(value: float, interval: tuple[float, float] | None) -> str:
    return f"{value:.3f}" + ("" if interval is None else f" ({interval[0]:.3f}-{interval[1]:.3f})")


def table_row(title: str, values: dict[str, float], interval: dict[str, tuple[float, float]]) -> str:
    """One test set: its figures with intervals, the share flagged unusual, accuracy on flagged / unflagged."""
    cells = [figure_cell(values[name], interval.get(name)) for name in COLUMNS_SHOWN]
    cells.append(f"{values['flagged_rate']:.3f}")
    cells.append(" / ".join(f"{values[key]:.3f}" if key in values else "-" for key in ACCURACY_FLAGGED))
    return f"| {title} | {int(values['n'])} | " + " | ".join(cells) + " |"


def targets_met(values: dict[str, float]) -> str:
    met = [f"{metric} {'yes' if values[metric] >= goal else 'no'}" for metric, goal in TARGETS.items()]
    return ", ".join(
        [
            *met,
            f"ECE {'yes' if values['ece'] <= 0.05 else 'no'}",
            f"flagged {'yes' if values['flagged_rate'] <= 0.10 else 'no'}",
        ]
    )


def readme(card: ModelCard, figures: dict[str, dict[str, float]], intervals: Intervals) -> str:
    """The report's front page: the shipped model's test figures and every held-out source's."""
    assert card.ood is not None and card.decision.threshold is not None
    guard = card.ood.metrics
    own = (
        card.metrics["test"]
        | {
            "ece": card.metrics["calibration"]["test_ece"],
            "flagged_rate": guard["test_false_flag_rate"],
        }
        | {key: guard[f"test_{key}"] for key in ACCURACY_FLAGGED if f"test_{key}" in guard}
    )
    header = "| test set | n | " + " | ".join(COLUMNS_SHOWN) + " | flagged unusual | accuracy flagged / unflagged |"
    temperature = card.calibration.temperature if card.calibration else 1.0
    lines = [
        f"# {card.name} v{card.version}: evaluation",
        "",
        f"{card.task}. Threshold p(pneumonia) >= {card.decision.threshold:.3f} (temperature {temperature:.3f}); "
        "95% bootstrap intervals in brackets.",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
        table_row("shipped model, its own test split (all three sources)", own, intervals.get("test", {})),
    ]
    lines += [
        table_row(f"held out: {name} (a model trained without it)", values, intervals.get(f"held_out_{name}", {}))
        for name, values in figures.items()
    ]
    lines += [
        "",
        "Targets (issue 16) on a source never seen: ROC AUC >= 0.85, sensitivity >= 0.85, specificity >= 0.70, "
        "ECE <= 0.05, flagged <= 10%. Met:",
        "",
        *[f"- held out {name}: {targets_met(values)}" for name, values in figures.items()],
        "",
        "The shipped model's full report (ROC and precision-recall with the threshold, calibration, confusion "
        "matrix, the unusual-image score by source, t-SNE by class and source, the worst errors with their "
        "heatmaps) is `report.md` here; each held-out model's is in `held-out-<sources>/`. "
        f"The unusual-image threshold is {card.ood.threshold:.3f} ({card.ood.threshold_on}); `held_out.json` "
        "holds the ratios it was set from. Made by `training/held_out_sources.py` (`bash scripts/train.sh adult`); "
        "what was tried and what the data would need: `NOTES.md`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="the shipped model's folder")
    parser.add_argument("--held-out", action="append", required=True, help="SOURCES=MODEL_DIR, repeated")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir() / "adult-cxr")
    parser.add_argument(
        "--intended-use", type=Path, default=REPO_ROOT / "training" / "intended_use" / "pneumonia-xray-adult.json"
    )
    parser.add_argument("--report-dir", type=Path, help="default training/reports/<name>-<version>")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/held-out-sources"))
    arguments = parser.parse_args()
    arguments.work_dir.mkdir(parents=True, exist_ok=True)
    card = ModelCard.read(arguments.model_dir)
    report_dir = arguments.report_dir or REPO_ROOT / "training" / "reports" / f"{card.name}-{card.version}"

    runs: dict[str, tuple[ModelCard, Evaluation, Scored]] = {}
    for item in arguments.held_out:
        sources, model_dir = item.split("=", 1)
        held_out = tuple(sources.split(","))
        run_card = ModelCard.read(Path(model_dir))
        config = card_config(run_card, arguments.data_dir, label_file(held_out, arguments.data_dir, arguments.work_dir))
        name = "+".join(held_out)
        evaluation = evaluate_model_dir(Path(model_dir), report_dir / f"held-out-{name}", config)
        runs[name] = (run_card, evaluation, scored(Path(model_dir), config))

    ratios = {name: run[2].ratio for name, run in runs.items()}
    metrics, intervals, limits = dict(card.metrics), dict(card.metrics_ci), []
    for name, (_, evaluation, scores) in runs.items():
        others = [ratio for other, ratio in ratios.items() if other != name] or [ratios[name]]
        figures = held_out_figures(evaluation, scores.flag_figures(max(1.0, *others)))
        metrics[f"held_out_{name}"] = figures
        intervals[f"held_out_{name}"] = evaluation.intervals["test"]
        limits.append(limits_text(name, figures, evaluation.intervals["test"]))

    # the shipped guard: the largest held-out ratio times the shipped model's own val percentile
    shipped_config = card_config(card, arguments.data_dir, label_file((), arguments.data_dir, arguments.work_dir))
    shipped = scored(arguments.model_dir, shipped_config)
    scale = max(1.0, *ratios.values())  # never stricter than the in-distribution rule
    assert card.ood is not None
    threshold = float(scale * np.quantile(shipped.val_ood, VAL_QUANTILE))
    ood = card.ood.model_copy(update={"threshold": threshold, "threshold_on": f"val x {scale:.3f} (held-out sources)"})
    card.model_copy(update={"ood": ood}).write(arguments.model_dir)
    evaluation = evaluate_model_dir(arguments.model_dir, report_dir, shipped_config)
    assert evaluation.ood is not None
    ood = ood.model_copy(update={"metrics": evaluation.ood.metrics.for_card() | {"held_out_ratios_max": scale}})
    intervals["test"] = evaluation.intervals["test"]

    use = IntendedUse.model_validate_json(arguments.intended_use.read_text())
    use = use.model_copy(update={"known_limits": [*limits, *use.known_limits]})
    card = card.model_copy(update={"metrics": metrics, "metrics_ci": intervals, "ood": ood, "intended_use": use})
    card.write(arguments.model_dir)
    figures = {name: metrics[f"held_out_{name}"] for name in runs}
    summary = {"ratios": ratios, "shipped_scale": scale, "threshold": threshold, "figures": figures}
    (report_dir / "held_out.json").write_text(json.dumps(summary, indent=2) + "\n")
    (report_dir / "README.md").write_text(readme(card, figures, intervals))
    for text in limits:
        print(text)


if __name__ == "__main__":
    main()
