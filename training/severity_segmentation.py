"""COVID-19 CT slice severity from segmentation: a small U-Net predicts the lung and the infection
masks, the predicted infected share of the lung gives the grade (mild < 25% <= moderate < 50% <=
severe), as the grade is defined in the data.

    nice -n 19 python training/severity_segmentation.py --out training/reports/severity-segmentation
    nice -n 19 python training/severity_segmentation.py --evaluate-only ...   # the figures of a trained run

The split is training/prepare_ct.py's (`severity_rows`: held-out volumes 10, 11, 14, 15; val 5, 17).
Images go through the serving preprocessing (`trainer.data.preprocessing_spec`: centre square,
bicubic resize, no equalisation by default); masks are resized to the same grid. Writes `segmentation.json`
(figures on val and test) and the Keras model (`unet.keras`, in `--run-dir`).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from PIL import Image
from prepare_ct import severity_rows
from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score, recall_score

from cxr_model.preprocessing import preprocess_bytes
from trainer.config import REPO_ROOT, default_data_dir
from trainer.data import preprocessing_spec

log = logging.getLogger("severity_segmentation")
GRADES = ("mild", "moderate", "severe")
BAND_EDGES = (0.25, 0.50)  # infected share of the lung where moderate and severe begin
MASK_FOLDERS = ("lung-masks", "infection-masks")  # the output channels, in this order
LUNG, INFECTION = 0, 1
SPLITS = ("train", "val", "test")
REPORT_FILE = "segmentation.json"


@dataclass(frozen=True)
class SegmentationConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    run_dir: Path = REPO_ROOT / "training" / "runs" / "severity-segmentation"
    report_dir: Path = REPO_ROOT / "training" / "reports" / "severity-segmentation"
    seed: int = 42
    image_size: int = 96
    # none: histogram equalisation maps the lungs of the held-out scans (zoomed in, more body and background
    # in the picture) far darker than those of training: their infection comes out as dark as healthy lung
    equalize: str = "none"
    filters: tuple[int, ...] = (8, 16, 32, 64)  # per resolution; the last is the bottleneck
    batch_size: int = 16
    epochs: int = 22
    learning_rate: float = 2e-3
    early_stopping_patience: int = 6
    reduce_lr_patience: int = 3
    max_shift: float = 0.06  # of the image side
    max_zoom: float = 1.35
    max_gamma: float = 1.4
    max_noise: float = 0.04  # standard deviation, of the grey range
    max_volume_repeat: int = 8
    lung_threshold: float = 0.5
    infection_threshold: float = 0.5


@dataclass(frozen=True)
class SegmentationSplit:
    images: np.ndarray  # (N, S, S, 1) float32, raw 0..255 after the serving preprocessing
    masks: np.ndarray  # (N, S, S, 2) float32 0..1: lung, infection
    fractions: np.ndarray  # (N,) the labelled infected share of the lung (full resolution)
    grades: np.ndarray  # (N,) int grade ids
    volumes: np.ndarray  # (N,) int


# --- data -----------------------------------------------------------------------------------


def set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)


def read_mask(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        resized = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0


def slice_masks(root: Path, slice_file: str, size: int) -> np.ndarray:
    """(size, size, 2): the lung and infection masks of one slice (PNG files of the slice's name)."""
    name = Path(slice_file).with_suffix(".png").name
    return np.stack([read_mask(root / folder / name, size) for folder in MASK_FOLDERS], axis=-1)


def fraction_by_file(data_dir: Path) -> dict[str, float]:
    with (data_dir / "covid-ct-severity" / "labels.csv").open(newline="") as stream:
        return {row["file"]: float(row["infected_fraction"]) for row in csv.DictReader(stream)}


def load_splits(config: SegmentationConfig) -> dict[str, SegmentationSplit]:
    """The severity slices and their masks, on prepare_ct.py's sides."""
    root = config.data_dir / "covid-ct-severity"
    spec = preprocessing_spec(config.image_size, equalize=config.equalize)
    rows = severity_rows(config.data_dir)
    fractions = fraction_by_file(config.data_dir)
    images = np.stack([preprocess_bytes((root / row["filename"]).read_bytes(), spec) for row in rows])
    masks = np.stack([slice_masks(root, row["filename"], config.image_size) for row in rows])
    sides = np.array([row["split"] for row in rows])
    grades = np.array([GRADES.index(row["label"]) for row in rows])
    volumes = np.array([int(row["group"]) for row in rows])
    fraction = np.array([fractions[row["filename"]] for row in rows], dtype=np.float32)
    return {
        side: SegmentationSplit(
            images[sides == side],
            masks[sides == side],
            fraction[sides == side],
            grades[sides == side],
            volumes[sides == side],
        )
        for side in SPLITS
    }


def volume_repeats(volumes: np.ndarray, cap: int) -> np.ndarray:
    """Per slice, how often an epoch shows it: slices of small volumes more often (up to `cap` times), so
    that each volume counts about as much as the median one. The few training volumes with the other
    archive's look (zoomed in, sharper: Radiopaedia) would otherwise be 3% of what the network sees."""
    names, sizes = np.unique(volumes, return_counts=True)
    repeats = np.clip(np.round(np.median(sizes) / sizes), 1, cap).astype(int)
    return repeats[np.searchsorted(names, volumes)]


def augment(image: tf.Tensor, masks: tf.Tensor, config: SegmentationConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Geometry (the same flip, zoom and shift for the image and its masks), then the grey levels (gamma,
    noise) of the image: the two archives differ in framing, contrast and sharpness."""
    size = config.image_size
    stacked = tf.image.random_flip_left_right(tf.concat([image, masks], axis=-1))
    side = tf.random.uniform([], 1.0 / config.max_zoom, 1.0)  # of the image: zooms in up to max_zoom
    centre = 0.5 + tf.random.uniform([2], -config.max_shift, config.max_shift)
    box = tf.concat([centre - side / 2, centre + side / 2], axis=0)[None]
    stacked = tf.image.crop_and_resize(stacked[None], box, [0], [size, size], extrapolation_value=0.0)[0]
    grey = (stacked[..., :1] / 255.0) ** tf.random.uniform([], 1.0 / config.max_gamma, config.max_gamma)
    noise = tf.random.normal(tf.shape(grey), stddev=tf.random.uniform([], 0.0, config.max_noise))
    return tf.clip_by_value(grey + noise, 0.0, 1.0) * 255.0, stacked[..., 1:]


def pipeline(split: SegmentationSplit, config: SegmentationConfig, training: bool) -> tf.data.Dataset:
    if not training:
        return tf.data.Dataset.from_tensor_slices((split.images, split.masks)).batch(config.batch_size)
    rows = np.repeat(np.arange(len(split.images)), volume_repeats(split.volumes, config.max_volume_repeat))
    data = tf.data.Dataset.from_tensor_slices((split.images[rows], split.masks[rows]))
    data = data.shuffle(len(rows), seed=config.seed, reshuffle_each_iteration=True)
    data = data.map(lambda image, masks: augment(image, masks, config), num_parallel_calls=1)
    return data.batch(config.batch_size).prefetch(1)


# --- the model ------------------------------------------------------------------------------


def conv_block(inputs: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    values = inputs
    for index in (1, 2):
        values = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")(values)
        values = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{index}")(values)
        values = keras.layers.ReLU(name=f"{name}_relu{index}")(values)
    return values


def build_unet(image_size: int, filters: tuple[int, ...]) -> keras.Model:
    """U-Net on raw 0..255 grey pixels; output (lung, infection) probabilities per pixel."""
    image = keras.Input((image_size, image_size, 1), name="image")
    values = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(image)
    skips = []
    for level, width in enumerate(filters[:-1]):
        values = conv_block(values, width, f"down{level}")
        skips.append(values)
        values = keras.layers.MaxPooling2D(name=f"pool{level}")(values)
    values = conv_block(values, filters[-1], "bottleneck")
    for level in reversed(range(len(filters) - 1)):
        values = keras.layers.UpSampling2D(name=f"up{level}")(values)
        values = keras.layers.Concatenate(name=f"skip{level}")([values, skips[level]])
        values = conv_block(values, filters[level], f"decode{level}")
    masks = keras.layers.Conv2D(len(MASK_FOLDERS), 1, activation="sigmoid", name="masks")(values)
    return keras.Model(image, masks, name="severity_unet")


def soft_dice(truth: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
    """Per channel, over the whole batch (slices with a tiny infection do not dominate)."""
    axes = (0, 1, 2)
    overlap = tf.reduce_sum(truth * predicted, axis=axes)
    total = tf.reduce_sum(truth, axis=axes) + tf.reduce_sum(predicted, axis=axes)
    return (2.0 * overlap + 1.0) / (total + 1.0)


def bce_dice_loss(truth: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
    bce = tf.reduce_mean(keras.losses.binary_crossentropy(truth, predicted))
    return bce + tf.reduce_mean(1.0 - soft_dice(truth, predicted))


def infection_dice(truth: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
    return soft_dice(truth, predicted)[INFECTION]


def lung_dice(truth: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
    return soft_dice(truth, predicted)[LUNG]


def compiled_unet(config: SegmentationConfig) -> keras.Model:
    model = build_unet(config.image_size, config.filters)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=bce_dice_loss,
        metrics=[infection_dice, lung_dice],
    )
    return model


def checkpoint_file(config: SegmentationConfig) -> Path:
    return config.run_dir / "unet.keras"


def history_file(config: SegmentationConfig) -> Path:
    return config.run_dir / "history.csv"


class EpochSeconds(keras.callbacks.Callback):
    """Adds each epoch's wall time to its logs (so history.csv keeps it)."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["seconds"] = time.monotonic() - self.started


def callbacks(config: SegmentationConfig) -> list[keras.callbacks.Callback]:
    return [
        EpochSeconds(),
        keras.callbacks.ModelCheckpoint(checkpoint_file(config), monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=config.reduce_lr_patience),
        keras.callbacks.CSVLogger(history_file(config)),
    ]


# --- fraction, grade and figures --------------------------------------------------------------


def infected_fraction(masks: Any, method: str, lung_threshold: float, infection_threshold: float) -> Any:
    """The predicted infected share of the predicted lung, from (N, S, S, 2) mask probabilities; keras
    ops, so the evaluation here and the exported graph compute it alike (numpy in, tensor out).

    soft: mean infection probability within the thresholded lung; hard: thresholded infection
    pixels within it; product: sum(p_inf * p_lung) / sum(p_lung)."""
    lung, infection = masks[..., LUNG], masks[..., INFECTION]
    if method == "product":
        return ops.sum(infection * lung, axis=(1, 2)) / ops.maximum(ops.sum(lung, axis=(1, 2)), 1e-6)
    inside = ops.cast(lung >= lung_threshold, infection.dtype)
    infected = ops.cast(infection >= infection_threshold, infection.dtype) if method == "hard" else infection
    return ops.sum(infected * inside, axis=(1, 2)) / ops.maximum(ops.sum(inside, axis=(1, 2)), 1.0)


def predicted_fractions(masks: np.ndarray, method: str, config: SegmentationConfig) -> np.ndarray:
    fractions = infected_fraction(masks, method, config.lung_threshold, config.infection_threshold)
    return np.asarray(ops.convert_to_numpy(fractions))


FRACTION_METHODS = ("soft", "hard", "product")


def grade_of(fractions: np.ndarray) -> np.ndarray:
    return np.digitize(fractions, BAND_EDGES).astype(np.int64)


def mask_dice(truth: np.ndarray, predicted: np.ndarray, threshold: float) -> dict[str, float]:
    """Dice of the thresholded prediction: pooled over the split, and the mean over slices."""
    truth, predicted = truth >= 0.5, predicted >= threshold
    overlap = (truth & predicted).sum(axis=(1, 2))
    totals = truth.sum(axis=(1, 2)) + predicted.sum(axis=(1, 2))
    per_slice = np.where(totals > 0, 2.0 * overlap / np.maximum(totals, 1), 1.0)
    return {"pooled": float(2.0 * overlap.sum() / max(totals.sum(), 1)), "mean_per_slice": float(per_slice.mean())}


def split_figures(split: SegmentationSplit, predicted: np.ndarray, method: str, config: SegmentationConfig) -> dict:
    fractions = predicted_fractions(predicted, method, config)
    decided = grade_of(fractions)
    labels = list(range(len(GRADES)))
    occurring = sorted(set(split.grades.tolist()) | set(decided.tolist()))  # macro F1 as trainer.metrics averages
    recalls = recall_score(split.grades, decided, labels=labels, average=None, zero_division=0)
    return {
        "n": len(split.grades),
        "class_counts": {grade: int(np.sum(split.grades == index)) for index, grade in enumerate(GRADES)},
        "quadratic_kappa": float(cohen_kappa_score(split.grades, decided, labels=labels, weights="quadratic")),
        "macro_f1": float(f1_score(split.grades, decided, labels=occurring, average="macro", zero_division=0)),
        "recall": {  # None: no slice of that grade in the split
            grade: float(value) if np.any(split.grades == index) else None
            for index, (grade, value) in enumerate(zip(GRADES, recalls, strict=True))
        },
        "accuracy": float(np.mean(decided == split.grades)),
        "confusion_matrix": confusion_matrix(split.grades, decided, labels=labels).tolist(),
        "fraction_mae": float(np.mean(np.abs(fractions - split.fractions))),
        "fraction_correlation": float(np.corrcoef(fractions, split.fractions)[0, 1]),
        "dice_lung": mask_dice(split.masks[..., LUNG], predicted[..., LUNG], config.lung_threshold),
        "dice_infection": mask_dice(split.masks[..., INFECTION], predicted[..., INFECTION], config.infection_threshold),
    }


def choose_method(split: SegmentationSplit, predicted: np.ndarray, config: SegmentationConfig) -> str:
    """The fraction method with the smallest mean absolute error of the fraction on val (val has
    few moderate and no severe slices, so its kappa says little)."""
    errors = {
        method: float(np.mean(np.abs(predicted_fractions(predicted, method, config) - split.fractions)))
        for method in FRACTION_METHODS
    }
    log.info("val fraction MAE by method: %s", errors)
    return min(errors, key=errors.__getitem__)


# --- main -----------------------------------------------------------------------------------


def train(config: SegmentationConfig, splits: dict[str, SegmentationSplit]) -> None:
    """Fit; the best epoch (val loss) is kept in run_dir/unet.keras."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    model = compiled_unet(config)
    model.fit(
        pipeline(splits["train"], config, training=True),
        validation_data=pipeline(splits["val"], config, training=False),
        epochs=config.epochs,
        callbacks=callbacks(config),
        verbose=2,
    )


def timing(history_csv: Path) -> dict[str, float | int | None]:
    """Epochs run, the best one and the time taken, from the run's history.csv."""
    with history_csv.open(newline="") as stream:
        epochs = list(csv.DictReader(stream))
    seconds = [float(row["seconds"]) for row in epochs if row.get("seconds")]
    return {
        "epochs_run": len(epochs),
        "best_epoch": int(np.argmin([float(row["val_loss"]) for row in epochs])) + 1,
        "fit_seconds": round(sum(seconds), 1) if seconds else None,
        "seconds_per_epoch": round(float(np.mean(seconds)), 1) if seconds else None,
    }


def evaluate(model: keras.Model, splits: dict[str, SegmentationSplit], config: SegmentationConfig) -> dict:
    predicted = {side: model.predict(splits[side].images, batch_size=32, verbose=0) for side in ("val", "test")}
    method = choose_method(splits["val"], predicted["val"], config)
    return {
        "fraction_method": method,
        **{side: split_figures(splits[side], predicted[side], method, config) for side in ("val", "test")},
    }


def parse_config() -> tuple[bool, SegmentationConfig]:
    defaults = SegmentationConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    parser.add_argument("--run-dir", type=Path, default=defaults.run_dir)
    parser.add_argument("--out", type=Path, default=defaults.report_dir, help="the report folder")
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--equalize", choices=("none", "histogram"), default=defaults.equalize)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--evaluate-only", action="store_true", help="evaluate run_dir/unet.keras, do not train")
    arguments = parser.parse_args()
    return arguments.evaluate_only, SegmentationConfig(
        data_dir=arguments.data_dir,
        run_dir=arguments.run_dir,
        report_dir=arguments.out,
        image_size=arguments.image_size,
        epochs=arguments.epochs,
        equalize=arguments.equalize,
        seed=arguments.seed,
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    evaluate_only, config = parse_config()
    set_seeds(config.seed)
    splits = load_splits(config)
    log.info("slices: %s", {side: len(split.grades) for side, split in splits.items()})
    if not evaluate_only:
        train(config, splits)
    model = keras.models.load_model(checkpoint_file(config), compile=False)  # the best epoch's
    report = {"config": json.loads(json.dumps(asdict(config), default=str)), "training": timing(history_file(config))}
    report |= evaluate(model, splits, config)
    config.report_dir.mkdir(parents=True, exist_ok=True)
    (config.report_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    log.info("test: %s", json.dumps(report["test"]))


if __name__ == "__main__":
    main()
