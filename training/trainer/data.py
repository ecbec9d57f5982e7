"""PneumoniaMNIST loading and the tf.data pipelines.

Every image goes through `inference.preprocessing.preprocess_array` with the same
`Preprocessing` spec that is written into the model card, so the pixels the model is
trained on are exactly the pixels the server will feed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from inference.card import Preprocessing, ResizeSpec
from inference.preprocessing import preprocess_array

SPLITS = ("train", "val", "test")
LABELS = ("normal", "pneumonia")
POSITIVE_CLASS = 1


class DataNotFoundError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W, 1) float32 model input, raw 0..255 pixel values
    labels: np.ndarray  # (N,) int32, 0 = normal, 1 = pneumonia

    def __len__(self) -> int:
        return len(self.labels)


def preprocessing_spec(image_size: int) -> Preprocessing:
    """The card's preprocessing: raw 0..255 grey pixels; scaling to 0..1 happens inside the model."""
    return Preprocessing(
        color_mode="grayscale",
        crop="center_square",
        resize=ResizeSpec(width=image_size, height=image_size, method="bicubic"),
        channels=1,
        scale=1.0,
        offset=0.0,
    )


def read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataNotFoundError(
            f"PneumoniaMNIST not found at {path}; set CXR_DATA_DIR to the folder holding "
            "pneumoniamnist/pneumoniamnist_28.npz"
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


def subsample(split: Split, max_samples: int | None, seed: int) -> Split:
    """A seeded random subset (for quick runs); the split itself when no limit or already small."""
    if max_samples is None or max_samples >= len(split):
        return split
    chosen = np.sort(np.random.default_rng(seed).permutation(len(split))[:max_samples])
    return Split(images=split.images[chosen], labels=split.labels[chosen])


def class_counts(labels: np.ndarray) -> dict[int, int]:
    return {label: int(np.sum(labels == label)) for label in range(len(LABELS))}


def balanced_class_weights(labels: np.ndarray) -> dict[int, float]:
    """n / (classes * count): each class contributes the same total weight to the loss."""
    counts = class_counts(labels)
    missing = [LABELS[label] for label, count in counts.items() if count == 0]
    if missing:
        raise ValueError(f"no training examples of class {missing}")
    return {label: len(labels) / (len(counts) * count) for label, count in counts.items()}


def make_dataset(split: Split, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """(image, label) batches; shuffled (reshuffled every epoch, deterministically) when a seed is given."""
    dataset = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
