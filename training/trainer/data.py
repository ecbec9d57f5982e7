"""Stage 1, data: `load_dataset(config)` -> the train, val and test splits as the model sees them.

Every image goes through `cxr_model.preprocessing` with the `Preprocessing` spec that is
written into the model card: .npz arrays through `preprocess_array`, files (JPEG, PNG, DICOM)
through `preprocess_bytes`, exactly as the server decodes an upload.

The labels come from the data (sub-folder names, a CSV, or the .npz's label ids named by its
data set file); the words for each label come from the config.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from cxr_model.card import Preprocessing, file_sha256
from cxr_model.preprocessing import preprocess_array, preprocess_bytes
from trainer.config import DATA_DIR_ENV, ClassWords, TrainConfig

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".dcm"}
PATIENT_ID = re.compile(r"(person\d+)_", re.IGNORECASE)  # Kermany: person123_bacteria_4.jpeg
DATASET_FILES = Path(__file__).parent / "datasets"


class DataNotFoundError(FileNotFoundError):
    pass


class DataError(ValueError):
    """The data cannot be trained on as given (labels not matching files, an empty class, ...)."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W, C) float32 model input, raw 0..255 pixel values
    label_ids: np.ndarray  # (N,) int32 indices into Dataset.labels
    sources: np.ndarray | None = None  # (N,) str: where each image came from (image-csv `source` column)

    def __len__(self) -> int:
        return len(self.label_ids)


class DataSource(BaseModel):
    """Where the images came from (the card's `training.data`)."""

    dataset: str
    source: str = ""
    file: str | None = None
    sha256: str | None = None
    files: int | None = None
    grouped_by: str | None = None


@dataclass(frozen=True)
class Dataset:
    labels: tuple[str, ...]  # in the model's output order
    classes: ClassWords  # the words for the labels that have them
    task: str
    train: Split
    val: Split
    test: Split
    source: DataSource

    @property
    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def binary(self) -> bool:
        return len(self.labels) == 2

    def counts(self, split: Split) -> dict[str, int]:
        """Images per label in one split."""
        return {label: int(np.sum(split.label_ids == index)) for index, label in enumerate(self.labels)}


class NpzDataSet(BaseModel):
    """A data set file (trainer/datasets/<name>.json) describing an .npz of official splits:
    `<split>_images` (N, H, W) uint8 and `<split>_labels` (N, 1) label ids; label id i is the
    i-th key of `classes`."""

    file: str
    source: str
    task: str
    classes: ClassWords

    @classmethod
    def read(cls, name: str) -> NpzDataSet:
        return cls.model_validate_json((DATASET_FILES / f"{name}.json").read_text())


def preprocessing_spec(
    image_size: int, channels: int = 1, resize_method: str = "bicubic", equalize: str = "none"
) -> Preprocessing:
    """The card's preprocessing: raw 0..255 pixels; scaling to 0..1 happens inside the model."""
    return Preprocessing.model_validate(
        {
            "color_mode": "grayscale" if channels == 1 else "rgb",
            "crop": "center_square",
            "resize": {"width": image_size, "height": image_size, "method": resize_method},
            "equalize": equalize,
            "channels": channels,
            "scale": 1.0,
            "offset": 0.0,
        }
    )


def config_spec(config: TrainConfig) -> Preprocessing:
    return preprocessing_spec(config.image_size, config.channels, config.resize_method, config.equalize)


def load_dataset(config: TrainConfig) -> Dataset:
    if config.dataset == "pneumoniamnist":
        dataset = load_npz_dataset(config, NpzDataSet.read(config.dataset))
    else:
        dataset = load_image_files(config)
    require_training_examples(dataset)
    return dataset


# --- .npz with official splits ----------------------------------------------------------


def read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataNotFoundError(f"{path.name} not found at {path}; set {DATA_DIR_ENV} to the shared data folder")
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def preprocess_images(raw_images: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """(N, H, W) uint8 -> (N, size, size, channels) float32, one image at a time like the server."""
    return np.stack([preprocess_array(pixels, spec) for pixels in raw_images])


def load_splits(path: Path, spec: Preprocessing) -> dict[str, Split]:
    arrays = read_npz(path)
    return {
        name: Split(
            images=preprocess_images(arrays[f"{name}_images"], spec),
            label_ids=arrays[f"{name}_labels"].reshape(-1).astype(np.int32),
        )
        for name in SPLITS
    }


def load_npz_dataset(config: TrainConfig, described: NpzDataSet) -> Dataset:
    path = config.data_dir / described.file
    splits = load_splits(path, config_spec(config))
    classes = config.classes or described.classes
    labels = tuple(classes)
    ids = set(np.unique(np.concatenate([split.label_ids for split in splits.values()])).tolist())
    if not ids <= set(range(len(labels))):
        raise DataError(f"{described.file} has label ids {sorted(ids)}; --classes names only {len(labels)}")
    source = DataSource(dataset=config.dataset, source=described.source, file=described.file, sha256=file_sha256(path))
    task = config.task or described.task
    return Dataset(labels, classes, task, splits["train"], splits["val"], splits["test"], source)


# --- image files ------------------------------------------------------------------------


def image_files(root: Path) -> list[Path]:
    """The JPEG, PNG and DICOM files under root, also those in linked folders."""
    found = (Path(folder) / name for folder, _, names in os.walk(root, followlinks=True) for name in names)
    return sorted(path for path in found if path.suffix.lower() in IMAGE_SUFFIXES)


def label_from_path(relative: Path, label_source: str, labels: tuple[str, ...]) -> str:
    """folder: the top folder's name. filename: the label named by a word of the file name
    (person1_virus_2.jpeg), else the top folder's name."""
    folder = relative.parts[0] if len(relative.parts) > 1 else ""
    if label_source == "filename":
        words = {word.lower() for word in re.split(r"[^A-Za-z]+", relative.stem)}
        named = [label for label in labels if label.lower() in words]
        if named:
            return named[0]
    return folder


def folder_labels(root: Path, label_source: str, labels: tuple[str, ...]) -> list[tuple[Path, str]]:
    """(file, label) of the images under root; with labels by folder and configured labels,
    only the sub-folders named by them are read."""
    if not root.is_dir():
        raise DataNotFoundError(f"image folder not found: {root}")
    if label_source == "folder" and labels:
        return [(path, label) for label in labels if (root / label).is_dir() for path in image_files(root / label)]
    files = image_files(root)
    if not files:
        raise DataNotFoundError(f"no JPEG, PNG or DICOM files under {root}")
    return [(path, label_from_path(path.relative_to(root), label_source, labels)) for path in files]


def csv_labels(csv_path: Path, image_root: Path) -> list[tuple[Path, str]]:
    """(file, label) rows of a CSV with `filename` and `label` columns; names are relative to image_root."""
    if not csv_path.is_file():
        raise DataNotFoundError(f"label file not found: {csv_path}")
    with csv_path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or not {"filename", "label"} <= set(rows[0]):
        raise DataError(f"{csv_path} needs a header with `filename` and `label` columns")
    listed = {row["filename"] for row in rows}
    missing = sorted(name for name in listed if not (image_root / name).is_file())
    if missing:
        raise DataError(f"{csv_path} lists {len(missing)} files not found under {image_root}, e.g. {missing[0]}")
    unlisted = [
        name
        for name in sorted(str(path.relative_to(image_root)) for path in image_files(image_root))
        if name not in listed
    ]
    if unlisted:
        raise DataError(f"{len(unlisted)} images under {image_root} have no label in {csv_path}, e.g. {unlisted[0]}")
    return [(image_root / row["filename"], row["label"]) for row in rows]


def label_order(found: list[str], configured: tuple[str, ...]) -> tuple[str, ...]:
    """The configured labels, checked against those found; the sorted found ones when none are configured."""
    counts = Counter(found)
    labels = configured or tuple(sorted(counts))
    empty = [label for label in labels if counts[label] == 0]
    if empty:
        raise DataError(f"no examples of class {', '.join(empty)} (found {dict(counts)})")
    unknown = sorted(set(counts) - set(labels))
    if unknown:
        raise DataError(f"labels {unknown} are not among the classes {list(labels)}")
    if len(labels) < 2:
        raise DataError(f"need at least two classes, found {list(labels)}")
    return labels


def patient_groups(paths: list[Path]) -> np.ndarray:
    """The patient id when the file name carries one (personN_...), else the file itself."""
    return np.array(
        [(match.group(1).lower() if (match := PATIENT_ID.search(path.name)) else str(path)) for path in paths]
    )


def split_indices(label_ids: np.ndarray, groups: np.ndarray, ratios: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Stratified, seeded split of the rows into len(ratios) parts with no group in two parts.

    Each group goes with its most common label; within a label the groups are shuffled and
    dealt out by the ratios.
    """
    rng = np.random.default_rng(seed)
    unique_groups = np.unique(groups)
    group_label = np.array([Counter(label_ids[groups == group]).most_common(1)[0][0] for group in unique_groups])
    fractions = np.cumsum(ratios) / np.sum(ratios)
    parts: list[list[str]] = [[] for _ in ratios]
    for label in np.unique(group_label):
        members = rng.permutation(unique_groups[group_label == label])
        bounds = np.round(fractions * len(members)).astype(int)[:-1]
        for part, chunk in zip(parts, np.split(members, bounds), strict=True):
            part.extend(chunk)
    return [np.flatnonzero(np.isin(groups, part)) for part in parts]


def listed_sides(config: TrainConfig) -> np.ndarray | None:
    """image-csv with a `split` column: the side (train, val or test) it gives each row, in row order."""
    sides = listed_column(config, "split")
    if sides is None:
        return None
    unknown = sorted(set(sides.tolist()) - set(SPLITS))
    if unknown:
        raise DataError(f"{config.labels_csv} names splits {unknown}; use {', '.join(SPLITS)}")
    return sides


def listed_column(config: TrainConfig, column: str) -> np.ndarray | None:
    """image-csv: the values of one optional column of the label file, in row order (None without it)."""
    if config.dataset != "image-csv" or config.labels_csv is None:
        return None
    with config.labels_csv.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    if column not in rows[0]:
        return None
    return np.array([row[column] for row in rows])


def labelled_files(config: TrainConfig) -> list[tuple[Path, str]]:
    if config.dataset == "image-csv":
        assert config.labels_csv is not None  # config.validate requires it
        return csv_labels(config.labels_csv, config.data_dir)
    return folder_labels(config.data_dir, config.label_source, tuple(config.classes))


def load_image_files(config: TrainConfig) -> Dataset:
    labelled = labelled_files(config)
    labels = label_order([label for _, label in labelled], tuple(config.classes))
    paths = [path for path, _ in labelled]
    label_ids = np.array([labels.index(label) for _, label in labelled], dtype=np.int32)
    spec = config_spec(config)
    images = np.stack([preprocess_bytes(path.read_bytes(), spec) for path in paths])
    sides = listed_sides(config)
    if sides is None:
        parts = split_indices(label_ids, patient_groups(paths), config.train_val_test_ratios, config.seed)
    else:
        parts = [np.flatnonzero(sides == side) for side in SPLITS]
    sources = listed_column(config, "source")
    train, val, test = (
        Split(images[rows], label_ids[rows], None if sources is None else sources[rows]) for rows in parts
    )
    source = DataSource(
        dataset=config.dataset,
        source=f"the images under {config.data_dir.name}/",
        files=len(paths),
        grouped_by="patient id in the file name, else file" if sides is None else "the label file's split column",
    )
    return Dataset(labels, config.classes, task_of(config, labels), train, val, test, source)


def task_of(config: TrainConfig, labels: tuple[str, ...]) -> str:
    return config.task or " vs ".join(
        config.classes[label].name if label in config.classes else label for label in labels
    )


def require_training_examples(dataset: Dataset) -> None:
    empty = [label for label, count in dataset.counts(dataset.train).items() if count == 0]
    if empty:
        raise DataError(f"no training examples of class {', '.join(empty)}")
