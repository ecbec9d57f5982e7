"""Data sets (MedMNIST .npz, class-per-folder images, a CSV of labels) and the tf.data pipelines.

Every image goes through `inference.preprocessing` with the same `Preprocessing` spec that
is written into the model card: npz arrays through `preprocess_array`, files (JPEG, PNG,
DICOM) through `preprocess_bytes`, exactly as the server decodes an upload. So the pixels the
model is trained on are the pixels the server will feed it.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from inference.card import Preprocessing, ResizeSpec
from inference.preprocessing import preprocess_array, preprocess_bytes

from trainer.config import DATA_FILE, TrainConfig

SPLITS = ("train", "val", "test")
LABELS = ("normal", "pneumonia")  # PneumoniaMNIST: 0 = normal, 1 = pneumonia
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".dcm"}
PATIENT_ID = re.compile(r"(person\d+)_", re.IGNORECASE)  # Kermany: person123_bacteria_4.jpeg


class DataNotFoundError(FileNotFoundError):
    pass


class DataError(ValueError):
    """The data cannot be trained on as given (labels not matching files, an empty class, ...)."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W, C) float32 model input, raw 0..255 pixel values
    labels: np.ndarray  # (N,) int32 class indices

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    class_names: tuple[str, ...]
    splits: dict[str, Split]
    source: dict = field(default_factory=dict)  # for the card: where the images came from


def preprocessing_spec(image_size: int, channels: int = 1, resize_method: str = "bicubic") -> Preprocessing:
    """The card's preprocessing: raw 0..255 pixels; scaling to 0..1 happens inside the model."""
    return Preprocessing(
        color_mode="grayscale" if channels == 1 else "rgb",
        crop="center_square",
        resize=ResizeSpec(width=image_size, height=image_size, method=resize_method),
        channels=channels,
        scale=1.0,
        offset=0.0,
    )


def config_spec(config: TrainConfig) -> Preprocessing:
    return preprocessing_spec(config.image_size, config.channels, config.resize_method)


# --- MedMNIST ---------------------------------------------------------------------------


def read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataNotFoundError(
            f"PneumoniaMNIST not found at {path}; set CXR_DATA_DIR to the folder holding {DATA_FILE}"
        )
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def preprocess_images(raw_images: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """(N, H, W) uint8 -> (N, size, size, channels) float32, one image at a time like the server."""
    return np.stack([preprocess_array(pixels, spec) for pixels in raw_images])


def to_split(raw_images: np.ndarray, raw_labels: np.ndarray, spec: Preprocessing) -> Split:
    return Split(images=preprocess_images(raw_images, spec), labels=raw_labels.reshape(-1).astype(np.int32))


def load_splits(path: Path, spec: Preprocessing) -> dict[str, Split]:
    arrays = read_npz(path)
    return {name: to_split(arrays[f"{name}_images"], arrays[f"{name}_labels"], spec) for name in SPLITS}


# --- image files ------------------------------------------------------------------------


def image_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataNotFoundError(f"image folder not found: {root}")
    return sorted(path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)


def label_from_path(relative: Path, label_source: str, classes: tuple[str, ...]) -> str:
    """folder: the top folder's name. filename: the class named by a word of the file name,
    else the top folder (normal/IM-0001.jpeg next to pneumonia/person1_virus_2.jpeg)."""
    folder = relative.parts[0] if len(relative.parts) > 1 else ""
    if label_source == "filename":
        words = {word.lower() for word in re.split(r"[^A-Za-z]+", relative.stem)}
        named = [name for name in classes if name.lower() in words]
        if named:
            return named[0]
    return folder


def folder_labels(root: Path, label_source: str, classes: tuple[str, ...]) -> list[tuple[Path, str]]:
    files = image_files(root)
    if not files:
        raise DataNotFoundError(f"no JPEG, PNG or DICOM files under {root}")
    return [(path, label_from_path(path.relative_to(root), label_source, classes)) for path in files]


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
    unlisted = sorted(str(path.relative_to(image_root)) for path in image_files(image_root))
    unlisted = [name for name in unlisted if name not in listed]
    if unlisted:
        raise DataError(f"{len(unlisted)} images under {image_root} have no label in {csv_path}, e.g. {unlisted[0]}")
    return [(image_root / row["filename"], row["label"]) for row in rows]


def class_names_of(labels: list[str], classes: tuple[str, ...]) -> tuple[str, ...]:
    """The configured class order, checked against the labels found; sorted names when not configured."""
    found = Counter(labels)
    names = classes or tuple(sorted(found))
    empty = [name for name in names if found[name] == 0]
    if empty:
        raise DataError(f"no examples of class {', '.join(empty)} (found {dict(found)})")
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(f"labels {unknown} are not among the classes {list(names)}")
    if len(names) < 2:
        raise DataError(f"need at least two classes, found {list(names)}")
    return names


def patient_groups(paths: list[Path]) -> np.ndarray:
    """The patient id when the file name carries one (personN_...), else the file itself."""
    return np.array(
        [(match.group(1).lower() if (match := PATIENT_ID.search(path.name)) else str(path)) for path in paths]
    )


def split_indices(labels: np.ndarray, groups: np.ndarray, ratios: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Stratified, seeded split of the rows into len(ratios) parts with no group in two parts.

    Each group goes with its most common label; within a label the groups are shuffled and
    dealt out by the ratios.
    """
    rng = np.random.default_rng(seed)
    unique_groups = np.unique(groups)
    group_label = np.array([Counter(labels[groups == group]).most_common(1)[0][0] for group in unique_groups])
    fractions = np.cumsum(ratios) / np.sum(ratios)
    parts: list[list[str]] = [[] for _ in ratios]
    for label in np.unique(group_label):
        members = rng.permutation(unique_groups[group_label == label])
        bounds = np.round(fractions * len(members)).astype(int)[:-1]
        for part, chunk in zip(parts, np.split(members, bounds), strict=True):
            part.extend(chunk)
    return [np.flatnonzero(np.isin(groups, part)) for part in parts]


def load_files(labelled: list[tuple[Path, str]], classes: tuple[str, ...], spec: Preprocessing) -> tuple:
    paths = [path for path, _ in labelled]
    class_names = class_names_of([label for _, label in labelled], classes)
    labels = np.array([class_names.index(label) for _, label in labelled], dtype=np.int32)
    images = np.stack([preprocess_bytes(path.read_bytes(), spec) for path in paths])
    return paths, class_names, images, labels


def load_dataset(config: TrainConfig) -> Dataset:
    spec = config_spec(config)
    if config.data_format == "medmnist":
        splits = load_splits(config.data_file, spec)
        return Dataset(
            LABELS, splits, {"file": DATA_FILE, "source": "PneumoniaMNIST, MedMNIST v2 (Yang et al. 2023), CC BY 4.0"}
        )
    if config.data_format == "csv":
        labelled = csv_labels(config.labels_csv, config.data_dir)
    else:
        labelled = folder_labels(config.data_dir, config.label_source, config.classes)
    paths, class_names, images, labels = load_files(labelled, config.classes, spec)
    parts = split_indices(labels, patient_groups(paths), config.train_val_test_ratios, config.seed)
    splits = {name: Split(images[rows], labels[rows]) for name, rows in zip(SPLITS, parts, strict=True)}
    source = {"format": config.data_format, "files": len(paths), "grouped_by": "patient id in the file name, else file"}
    return Dataset(class_names, splits, source)


# --- training-set helpers and pipelines -------------------------------------------------


def subsample(split: Split, max_samples: int | None, seed: int) -> Split:
    """A seeded random subset (for quick runs); the split itself when no limit or already small."""
    if max_samples is None or max_samples >= len(split):
        return split
    chosen = np.sort(np.random.default_rng(seed).permutation(len(split))[:max_samples])
    return Split(images=split.images[chosen], labels=split.labels[chosen])


def class_counts(labels: np.ndarray, num_classes: int = len(LABELS)) -> dict[int, int]:
    return {label: int(np.sum(labels == label)) for label in range(num_classes)}


def balanced_class_weights(labels: np.ndarray, num_classes: int = len(LABELS)) -> dict[int, float]:
    """n / (classes * count): each class contributes the same total weight to the loss."""
    counts = class_counts(labels, num_classes)
    missing = [label for label, count in counts.items() if count == 0]
    if missing:
        names = [LABELS[label] if num_classes == len(LABELS) else str(label) for label in missing]
        raise ValueError(f"no training examples of class {names}")
    return {label: len(labels) / (num_classes * count) for label, count in counts.items()}


def oversample(split: Split, seed: int) -> Split:
    """Every class repeated (seeded random picks) up to the largest class's count; the model's
    augmentation makes the repeats differ."""
    rng = np.random.default_rng(seed)
    largest = max(Counter(split.labels.tolist()).values())
    rows = []
    for label in np.unique(split.labels):
        members = np.flatnonzero(split.labels == label)
        rows += [members, rng.choice(members, size=largest - len(members))]
    rows = np.concatenate(rows)
    return Split(images=split.images[rows], labels=split.labels[rows])


def make_dataset(split: Split, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """(image, label) batches; shuffled (reshuffled every epoch, deterministically) when a seed is given."""
    dataset = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
