"""Image-file data sets: labels from folders, file names or a CSV; DICOM; patient-grouped splits."""

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from training_support import words

from cxr_model.card import ModelCard
from trainer.config import TrainConfig
from trainer.data import (
    DataError,
    Split,
    csv_labels,
    label_from_path,
    label_order,
    load_dataset,
    patient_groups,
    split_indices,
)
from trainer.fit import oversample
from trainer.pipeline import train


@pytest.mark.parametrize(
    ("relative", "source", "classes", "label"),
    [
        ("NORMAL/IM-0001-0001.jpeg", "folder", (), "NORMAL"),
        ("non-COVID/Non-Covid (1).png", "folder", ("non-COVID", "COVID"), "non-COVID"),
        ("COVID/Covid (1).png", "folder", (), "COVID"),
        ("pneumonia/person12_bacteria_46.jpg", "filename", ("normal", "bacteria", "virus"), "bacteria"),
        ("pneumonia/person1231_virus_2088.jpg", "filename", ("normal", "bacteria", "virus"), "virus"),
        ("normal/IM-0001-0001.jpg", "filename", ("normal", "bacteria", "virus"), "normal"),
    ],
)
def test_labels_come_from_the_folder_or_the_file_name(relative, source, classes, label):
    assert label_from_path(Path(relative), source, classes) == label


def test_patient_id_groups_kermany_files_and_leaves_others_alone():
    paths = [Path("p/person1_bacteria_1.jpg"), Path("p/person1_virus_7.jpg"), Path("p/person12_bacteria_46.jpg"),
             Path("n/IM-0001-0001.jpg"), Path("n/IM-0003-0001.jpeg")]  # fmt: skip
    groups = patient_groups(paths)
    assert groups[0] == groups[1] == "person1" and groups[2] == "person12"
    assert len(set(groups)) == 4


@pytest.mark.parametrize("ratios", [(0.6, 0.2, 0.2), (0.7, 0.3)])
def test_split_is_stratified_seeded_and_keeps_each_patient_on_one_side(ratios):
    rng = np.random.default_rng(0)
    groups = np.array([f"person{rng.integers(0, 60)}" for _ in range(400)])
    patient_label = {group: int(group[6:]) % 3 == 0 for group in set(groups)}
    labels = np.array([patient_label[group] for group in groups], dtype=np.int32)

    parts = split_indices(labels, groups, ratios, seed=1)
    assert [list(part) for part in parts] == [list(part) for part in split_indices(labels, groups, ratios, seed=1)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(400))
    patient_sets = [set(groups[part]) for part in parts]
    for first in range(len(parts)):
        for second in range(first + 1, len(parts)):
            assert not patient_sets[first] & patient_sets[second]
    for part, patients, ratio in zip(parts, patient_sets, ratios, strict=True):
        # both classes in every part, each part near its share of the patients
        assert set(labels[part]) == {0, 1}
        assert len(patients) / len(set(groups)) == pytest.approx(ratio / sum(ratios), abs=0.08)
    assert [list(part) for part in split_indices(labels, groups, ratios, seed=2)] != [list(part) for part in parts]


def test_sample_xrays_split_by_patient(samples_dir):
    dataset = load_dataset(TrainConfig(dataset="image-folder", data_dir=samples_dir))
    assert dataset.labels == ("normal", "pneumonia")  # the sub-folders, sorted
    assert dataset.classes == {} and dataset.task == "normal vs pneumonia"
    assert sum(len(split) for split in dataset.splits.values()) == 55
    assert all(split.images.shape[1:] == (28, 28, 1) for split in dataset.splits.values())


def test_configured_classes_choose_the_sub_folders_and_their_order(samples_dir):
    classes = words("pneumonia", "normal")
    dataset = load_dataset(TrainConfig(dataset="image-folder", data_dir=samples_dir, classes=classes))
    assert dataset.labels == ("pneumonia", "normal") and dataset.classes == classes
    assert dataset.task == "Pneumonia vs Normal"
    only_one = TrainConfig(dataset="image-folder", data_dir=samples_dir, classes=words("normal"))
    with pytest.raises(DataError, match="need at least two classes"):
        load_dataset(only_one)


def test_class_folders_may_be_links(samples_dir, tmp_path):
    for label in ("normal", "pneumonia"):
        (tmp_path / label).symlink_to(samples_dir / label, target_is_directory=True)
    dataset = load_dataset(TrainConfig(dataset="image-folder", data_dir=tmp_path))
    assert dataset.labels == ("normal", "pneumonia")
    assert sum(len(split) for split in dataset.splits.values()) == 55


def test_a_two_way_split_carves_val_out_of_train(samples_dir):
    config = TrainConfig(dataset="image-folder", data_dir=samples_dir, split_ratios=(0.7, 0.3))
    assert config.train_val_test_ratios == pytest.approx((0.56, 0.14, 0.3))
    sizes = {name: len(split) for name, split in load_dataset(config).splits.items()}
    assert set(sizes) == {"train", "val", "test"} and sum(sizes.values()) == 55
    assert sizes["train"] > sizes["test"] > sizes["val"] > 0


def test_csv_labels_must_match_the_images(tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "labels.csv").write_text("filename,label\na.png,normal\nb.png,pneumonia\n")
    assert csv_labels(tmp_path / "labels.csv", tmp_path) == [
        (tmp_path / "a.png", "normal"),
        (tmp_path / "b.png", "pneumonia"),
    ]
    (tmp_path / "c.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"have no label.*c\.png"):
        csv_labels(tmp_path / "labels.csv", tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\na.png,normal\n")
    with pytest.raises(DataError, match="`filename` and `label`"):
        csv_labels(tmp_path / "labels.csv", tmp_path)


def test_a_configured_class_without_examples_is_refused():
    assert label_order(["b", "a", "b"], ()) == ("a", "b")
    with pytest.raises(DataError, match="no examples of class virus"):
        label_order(["normal", "bacteria"], ("normal", "bacteria", "virus"))
    with pytest.raises(DataError, match="not among the classes"):
        label_order(["normal", "bacteria", "fungus"], ("normal", "bacteria"))


def test_oversampling_balances_the_classes_and_keeps_every_original():
    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    split = Split(images=images, label_ids=np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], dtype=np.int32))
    balanced = oversample(split, seed=0)
    assert Counter(balanced.label_ids.tolist()) == {0: 8, 1: 8}
    assert set(balanced.images.reshape(-1).tolist()) == set(range(10))
    np.testing.assert_array_equal(balanced.label_ids, (balanced.images.reshape(-1) >= 2).astype(np.int32))


def test_dicom_files_are_read_through_the_serving_decoder(data_dir, tmp_path):
    dicom = data_dir / "dicom" / "CT_small.dcm"
    if not dicom.is_file():
        pytest.skip(f"{dicom} not found")
    for label in ("a", "b"):
        for index in range(3):
            (tmp_path / label).mkdir(exist_ok=True)
            shutil.copy(dicom, tmp_path / label / f"scan{index}.dcm")
    dataset = load_dataset(TrainConfig(dataset="image-folder", data_dir=tmp_path))
    images = np.concatenate([split.images for split in dataset.splits.values()])
    assert images.shape == (6, 28, 28, 1) and 0 <= images.min() < images.max() <= 255


def test_three_classes_from_sample_file_names_end_to_end(quick_config):
    config = quick_config(label_source="filename", classes=words("normal", "bacteria", "virus"), epochs=2)
    card = train(config)
    assert card.labels == ["normal", "bacteria", "virus"]
    assert card.classes == words("normal", "bacteria", "virus")
    assert card.decision.threshold is None and card.decision.positive_class is None
    assert card.outputs[0].shape == [-1, 3]
    assert card.metrics["onnx_parity"]["label_agreement"] == 1.0
    assert card.metrics["onnx_parity"]["max_abs_diff"] <= 1e-4
    assert sum(card.training["splits"].values()) == 55
    assert ModelCard.read(config.output_dir) == card
