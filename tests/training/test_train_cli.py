"""`python -m trainer train|evaluate|export`, and bad input stopping with one line before training."""

import json

import pytest

from cxr_model.card import ModelCard
from trainer.cli import main


def quick_train_argv(samples_dir, tmp_path, *extra: str) -> list[str]:
    return [
        "train", "--dataset", "image-folder", "--data-dir", str(samples_dir),
        "--output-dir", str(tmp_path / "model" / "1"), "--runs-dir", str(tmp_path / "runs"),
        "--epochs", "1", "--filters", "4", "--batch-size", "16", "--verbose", "0", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(samples_dir, tmp_path_factory):
    """One quick `train` run: (its run folder, its model folder)."""
    root = tmp_path_factory.mktemp("cli")
    assert main(quick_train_argv(samples_dir, root, "--embedding-baselines", "true")) == 0
    (run_dir,) = (root / "runs").iterdir()
    return run_dir, root / "model" / "1"


def test_evaluate_re_evaluates_a_run(trained, tmp_path):
    run_dir, model_dir = trained
    assert main(["evaluate", "--run-dir", str(run_dir), "--report-dir", str(tmp_path / "again")]) == 0
    report = json.loads((tmp_path / "again" / "report.json").read_text())
    card = ModelCard.read(model_dir)
    assert report["test"]["metrics"]["accuracy"] == pytest.approx(card.metrics["test"]["accuracy"])
    assert set(report["baselines"]) == {"svm", "random_forest"}
    assert (tmp_path / "again" / "tsne.png").is_file()
    assert (tmp_path / "again" / "worst_errors.png").is_file() == bool(report["test_images"] and errors_in(report))


def errors_in(report: dict) -> bool:
    scores = report["test_images"]
    return scores["label_ids"] != scores["decided_ids"]


def test_export_re_exports_a_run(trained, tmp_path):
    run_dir, model_dir = trained
    assert main(["export", "--run-dir", str(run_dir), "--to", str(tmp_path / "exported" / "1")]) == 0
    exported = ModelCard.read(tmp_path / "exported" / "1")
    assert exported.decision == ModelCard.read(model_dir).decision
    assert exported.metrics["onnx_parity"]["label_agreement"] == 1.0


def test_evaluate_an_exported_model_folder(trained, samples_dir, tmp_path):
    _, model_dir = trained
    argv = ["evaluate", "--model-dir", str(model_dir), "--report-dir", str(tmp_path / "report"),
            "--dataset", "image-folder", "--data-dir", str(samples_dir)]  # fmt: skip
    assert main(argv) == 0
    card = ModelCard.read(model_dir)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["decision"] == card.decision.model_dump()
    assert report["test"]["metrics"]["accuracy"] == pytest.approx(card.metrics["test"]["accuracy"], abs=1e-6)
    assert report["test"]["ece"] == pytest.approx(card.metrics["calibration"]["test_ece"], abs=1e-6)
    assert report["ood"]["threshold"] == card.ood.threshold
    # every plot of the report, from the ONNX graph and the card (the learning curves: its history)
    assert card.training["history"]["loss"] and report["history"] == card.training["history"]
    assert report["best_epoch"] == card.training["best_epoch"] <= len(card.training["history"]["loss"])
    plots = {"roc", "precision_recall", "threshold", "calibration", "reliability", "reliability_before", "confusion",
             "learning_curves", "ood_scores", "tsne"} | ({"worst_errors"} if errors_in(report) else set())  # fmt: skip
    assert {path.stem for path in (tmp_path / "report").glob("*.png")} == plots
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert all(f"]({name}.png)" in markdown for name in plots)
    assert len(report["tsne"]["points"]) == len(report["tsne"]["classes"]) > 0


CLASSES_WITH_COVID = json.dumps(
    {label: {"name": label, "finding": f"{label} seen"} for label in ("normal", "pneumonia", "covid")}
)


def write_csv(path, rows):
    path.write_text("filename,label\n" + "".join(f"{name},{label}\n" for name, label in rows))
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--architecture", "resnet50"], "unknown architecture 'resnet50'"),
        (["--data-dir", "/nonexistent/images"], "image folder not found: /nonexistent/images"),
        (["--classes", CLASSES_WITH_COVID], "no examples of class covid"),
        (["--classes", '{"normal": {"name": "Normal"}}'], "--classes is not label -> {name, finding}: normal.finding"),
        (["--classes", "/nonexistent/classes.json"], "neither a JSON object nor a file: /nonexistent/classes.json"),
        (["--label-source", "filename"], "label_source filename needs --classes"),
    ],
)
def test_bad_input_stops_with_one_line_before_training(samples_dir, tmp_path, capsys, extra, message):
    assert main(quick_train_argv(samples_dir, tmp_path) + extra) == 1
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(error_lines) == 1 and message in error_lines[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "model").exists()


def test_a_label_file_not_matching_the_images_stops_the_run(samples_dir, tmp_path, capsys):
    normal = sorted((samples_dir / "normal").iterdir())[0].name
    labels = write_csv(tmp_path / "labels.csv", [(f"normal/{normal}", "normal"), ("normal/absent.jpg", "normal")])
    assert main(quick_train_argv(samples_dir, tmp_path, "--dataset", "image-csv", "--labels-csv", str(labels))) == 1
    assert "files not found" in capsys.readouterr().err and "normal/absent.jpg" in labels.read_text()


def test_the_command_and_its_subcommands_show_their_help(capsys):
    for argv in (["--help"], ["evaluate", "--help"], ["train", "--help"]):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 0
    shown = capsys.readouterr().out
    assert "{train,evaluate,export}" in shown and "--model-dir" in shown and "--architecture" in shown
    assert "--classes" in shown and "--dataset" in shown
