"""A model with other labels goes from training to the clinician's screen without a code change.

A three-class model is trained here, from real images, by the training command line (in the
training environment), exported to a model repository of its own, served by a real inference
service, classified through a real gateway (stored in Postgres and S3) and shown in Chromium:
the browser shows the class names and findings its card gives, and nothing of the default model.

Its card is given an intended use (images the image-kind model calls `other`: MedNIST's hand
radiographs, head and abdominal CT slices) and the repository the image-kind model, so the gateway
routes these images to it as it routes chest X-rays to the X-ray model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from e2e_steps import SLOW, case_of, choose_files, classify, expect, go_to, history_row, sign_in_as_admin

from cxr_model.card import ModelCard
from cxr_model.intended_use import IntendedUse, Population

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_PYTHON = REPO_ROOT / ".venv-training" / "bin" / "python"
MODEL_NAME = "body-region"
# MedNIST folder -> the words the card gives that class
CLASSES = {
    "Hand": {"name": "Hand radiograph", "finding": "A radiograph of a hand"},
    "HeadCT": {"name": "Head CT slice", "finding": "A CT slice of the head"},
    "AbdomenCT": {"name": "Abdominal CT slice", "finding": "A CT slice of the abdomen"},
}
INTENDED_USE = IntendedUse(
    image_kind="other",
    input_kind="hand radiograph, head CT slice or abdominal CT slice (MedNIST)",
    modalities=["CR", "CT"],
    body_parts=["HAND", "HEAD", "ABDOMEN"],
    population=Population(description="the MedNIST images (any age)"),
)
HELD_OUT = 5  # images per class kept out of training, classified in the test


@pytest.fixture(scope="module")
def three_class_repository(data_dir, tmp_path_factory) -> Path:
    """A model repository holding only the three-class model, trained by the training command line."""
    if not TRAINING_PYTHON.exists():
        pytest.fail(f"the training environment {TRAINING_PYTHON} is missing: scripts/test.sh makes it")
    work = tmp_path_factory.mktemp("three-classes")
    images = work / "images"
    for folder in CLASSES:  # links, not copies: the data stays where it is
        (images / folder).mkdir(parents=True)
        for path in sorted((data_dir / "other-images" / "mednist" / folder).glob("*.jpeg"))[HELD_OUT:]:
            (images / folder / path.name).symlink_to(path)
    (work / "classes.json").write_text(json.dumps(CLASSES))
    repository = work / "models"
    command = [
        str(TRAINING_PYTHON),
        "-m",
        "trainer",
        "train",
        "--dataset",
        "image-folder",
        "--data-dir",
        str(images),
        "--classes",
        str(work / "classes.json"),
        "--output-dir",
        str(repository / MODEL_NAME / "1"),  # the card's name and version are these two folders
        "--runs-dir",
        str(work / "runs"),
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--filters",
        "16,32",
        "--embedding-baselines",
        "false",
        "--verbose",
        "0",
    ]
    started = time.monotonic()
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    print(f"trained the three-class model in {time.monotonic() - started:.0f} s")
    card_path = repository / MODEL_NAME / "1" / "model.json"
    card = json.loads(card_path.read_text()) | {"intended_use": INTENDED_USE.model_dump()}
    card_path.write_text(json.dumps(card))
    shutil.copytree(REPO_ROOT / "models" / "image-kind", repository / "image-kind")
    return repository


def held_out_images(data_dir: Path) -> dict[str, list[Path]]:
    mednist = data_dir / "other-images" / "mednist"
    return {folder: sorted((mednist / folder).glob("*.jpeg"))[:HELD_OUT] for folder in CLASSES}


def test_a_three_class_model_reaches_the_screen_with_its_own_class_names(
    three_class_repository, data_dir, start_inference, gateway_with, open_page, gateway, logs_dir
):
    from processes import free_port, frontend_process

    card = ModelCard.read(three_class_repository / MODEL_NAME / "1")
    assert card.labels == list(CLASSES) and card.decision.positive_class is None and card.intended_use
    assert {label: card.describe(label).model_dump() for label in card.labels} == CLASSES

    inference = start_inference({"INFERENCE_MODEL_REPOSITORY": str(three_class_repository)})
    api = gateway_with(INFERENCE_URL=inference)  # no model named: the gateway routes by the image's kind
    port = free_port()
    frontend = frontend_process(port, str(api.base_url), logs_dir / "frontend-three-classes.log").start()
    try:
        # through the API: every held-out image gets an answer in the card's words, stored as given
        answers = []
        for folder, paths in held_out_images(data_dir).items():
            for path in paths:
                response = api.post("/classify", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
                assert response.status_code == 201, response.text
                answers.append((folder, response.json()))
        for _, result in answers:
            assert result["model_name"] == MODEL_NAME and result["positive_class"] is None
            assert [item["label"] for item in result["classes"]] == card.labels
            assert set(result["probabilities"]) == set(CLASSES)
            assert api.get(f"/results/{result['id']}").json()["classes"] == result["classes"]
        correct = sum(folder == result["label"] for folder, result in answers)
        assert correct >= 0.8 * len(answers), answers  # a trained model, not a random one

        # in the browser: the finding, one bar per class with its name, no threshold
        page = open_page(f"http://127.0.0.1:{port}")
        sign_in_as_admin(page, gateway)
        hand = held_out_images(data_dir)["Hand"][0]
        choose_files(page, hand)
        [answer] = classify(page)
        assert answer["status"] == 201, answer
        result = answer["body"]
        panel = case_of(page, hand.name).locator("[data-role=result]")
        expect(panel.locator(".finding")).to_have_text(CLASSES[result["label"]]["finding"], timeout=SLOW)
        bars = panel.get_by_role("list", name="Probability of each class").get_by_role("listitem")
        expect(bars).to_have_count(3)
        for words in CLASSES.values():
            expect(bars.filter(has_text=words["name"])).to_have_count(1)
        expect(panel).to_contain_text("None (the most probable class is reported)")
        expect(panel).not_to_contain_text("pneumonia", ignore_case=True)

        go_to(page, "History")
        history = page.locator("#history")
        expect(history_row(page, result["id"])).to_contain_text(CLASSES[result["label"]]["finding"])
        history.get_by_label("Result").select_option(label=CLASSES["AbdomenCT"]["finding"])
        with page.expect_response(lambda response: "/api/results?" in response.url) as filtered:
            history.get_by_role("button", name="Apply filters").click()
        abdomen_ct = sum(r["label"] == "AbdomenCT" for _, r in answers) + (result["label"] == "AbdomenCT")
        assert filtered.value.json()["total"] == abdomen_ct > 0
        expect(history.locator("tbody tr")).to_have_count(abdomen_ct)
        shown = history.locator("tbody tr .tag:not(.tag--warning)").all_inner_texts()
        assert shown and set(shown) == {CLASSES["AbdomenCT"]["finding"]}
    finally:
        frontend.stop()
