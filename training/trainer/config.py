"""The settings of a training run: one frozen dataclass, one command-line flag per field (cli.py)."""

from __future__ import annotations

import json
import os
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from cxr_model.card import ClassDescription

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR_ENV = "CXR_DATA_DIR"
COMMITTED_MODEL = Path("models") / "pneumonia-xray" / "2"

DATASETS = ("pneumoniamnist", "image-folder", "image-csv")
ARCHITECTURES = ("compact", "cnn1", "cnn2", "vgg", "cnn6", "stn", "resnet101v2")
LABEL_SOURCES = ("folder", "filename")
RESIZE_METHODS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
EQUALIZE = ("none", "histogram")
VAL_SHARE_OF_TRAIN = 0.2  # with a two-way train,test split

ClassWords = dict[str, ClassDescription]
_CLASS_WORDS: TypeAdapter[ClassWords] = TypeAdapter(ClassWords)


class ConfigError(ValueError):
    """A setting that cannot work; raised before any data is read or any model is built."""


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, REPO_ROOT.parent / "shared" / "data"))


def default_output_dir() -> Path:
    return REPO_ROOT / COMMITTED_MODEL


def default_runs_dir() -> Path:
    return REPO_ROOT / "training" / "runs"


@dataclass(frozen=True)
class TrainConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    # <repository>/<model name>/<version>: the card's name and version are these two folder names
    output_dir: Path = field(default_factory=default_output_dir)
    runs_dir: Path = field(default_factory=default_runs_dir)

    # Data. pneumoniamnist: data_dir holds the .npz named by trainer/datasets/pneumoniamnist.json,
    # with its official splits. image-folder: data_dir holds one sub-folder per class (or, with
    # label_source=filename, a word of the file name is the label: person1_virus_2.jpg).
    # image-csv: labels_csv maps file names (relative to data_dir) to labels. JPEG, PNG and
    # DICOM files are read.
    dataset: str = "pneumoniamnist"
    labels_csv: Path | None = None
    label_source: str = "folder"
    # label -> the words clinicians see ({"name", "finding"}), in the model's output order; a
    # binary model's positive class is the second. For image sets the keys also choose the
    # classes (the sub-folders read); empty: every sub-folder, sorted, without words.
    # pneumoniamnist: label id i is the i-th key; empty: the data set file's classes.
    classes: ClassWords = field(default_factory=dict)
    # The card's task; empty: the data set's, else the class names joined by "vs".
    task: str = ""
    # train,val,test fractions for image sets, split by patient when names carry one. Two
    # fractions are train,test: val, which early stopping and the threshold need, is then
    # VAL_SHARE_OF_TRAIN of the train part.
    split_ratios: tuple[float, ...] = (0.6, 0.2, 0.2)

    seed: int = 42
    image_size: int = 28
    channels: int = 1
    resize_method: str = "bicubic"
    # none, or histogram: grey levels equalised after the resize (the card's preprocessing, so the
    # server does the same), against exposure and contrast differences between sites
    equalize: str = "none"
    max_train_samples: int | None = None

    architecture: str = "compact"
    # compact / vgg: conv widths per block; cnn1, cnn2, cnn6 and stn use the first ones.
    filters: tuple[int, ...] = (32, 64, 128)
    # compact / stn: max-pool after the last block too; without it the class-activation maps
    # keep a finer grid (7x7 instead of 3x3 at 28 px).
    final_pool: bool = False
    dropout: float = 0.3
    # compact / stn / cnn6: the momentum of batch normalisation's moving statistics (Keras: 0.99). A
    # lower one (0.9) follows the weights more closely where they change fast on a small data set, so
    # the statistics used at inference match the network they normalise.
    batch_norm_momentum: float = 0.99
    # resnet101v2 only: ImageNet weights from a local .h5 file (random init when None), the
    # epochs of the second, fine-tuning phase (all layers trainable) and its learning-rate factor.
    pretrained_weights: Path | None = None
    fine_tune_epochs: int = 0
    fine_tune_lr_factor: float = 0.1
    # Any architecture: start from the weights of the layers with the same name and shape in
    # this .npz (written by training/pretrain.py, pretrained here on unlabelled images).
    init_weights: Path | None = None

    # Augmentation (training only): rotation as a fraction of a full turn, zoom, translation and
    # shear as fractions of the image side, brightness as a fraction of the value range. Strong
    # on purpose: milder settings leave the model overconfident on the shifted test split.
    rotation: float = 0.05
    zoom: float = 0.15
    translation: float = 0.1
    shear: float = 0.1
    flip: str = "none"
    brightness: float = 0.1
    # Imbalance: repeat the smaller classes (differently augmented each time) instead of class weights.
    oversample: bool = False
    # image-csv with a `source` column: weight the training images so that within each class every
    # source counts the same (weights capped at MAX_SOURCE_WEIGHT), so which hospital an image
    # comes from tells less about its class
    balance_sources: bool = False

    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    monitor: str = "val_auc"
    early_stopping_patience: int = 8
    reduce_lr_patience: int = 3
    reduce_lr_factor: float = 0.5
    min_learning_rate: float = 1e-5
    verbose: int = 2

    # Binary models' threshold: highest Youden's J on val among thresholds keeping this val sensitivity.
    min_sensitivity: float = 0.95
    # The report also shows the operating point chosen on val for this sensitivity and its cost.
    target_sensitivity: float = 0.97
    # Embedding baselines (SVM, random forest) and the t-SNE plot in the report.
    embedding_baselines: bool = True
    # Out-of-distribution guard: the share of val images whose Mahalanobis score stays below
    # the flagging threshold.
    ood_val_quantile: float = 0.995

    opset: int = 17
    parity_max_abs_diff: float = 1e-4

    @property
    def model_name(self) -> str:
        return self.output_dir.parent.name

    @property
    def model_version(self) -> str:
        return self.output_dir.name

    @property
    def train_val_test_ratios(self) -> tuple[float, float, float]:
        if len(self.split_ratios) == 2:
            train, test = self.split_ratios
            return (train * (1 - VAL_SHARE_OF_TRAIN), train * VAL_SHARE_OF_TRAIN, test)
        train, val, test = self.split_ratios
        return (train, val, test)

    def to_json_dict(self) -> dict[str, Any]:
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        return dict(json.loads(json.dumps(values, default=_json_value)))

    @classmethod
    def from_json_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The inverse of to_json_dict (a run's config.json back into a config)."""
        known = {item.name for item in fields(cls)}
        return replace(cls(), **{key: _from_json(key, value) for key, value in values.items() if key in known})

    def hyperparameters(self) -> dict[str, Any]:
        """The settings as JSON values, without machine-specific paths (for the card)."""
        return {key: value for key, value in self.to_json_dict().items() if not _is_path_field(key)}


def _json_value(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump()
    return str(value)  # paths


def field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _is_path_field(name: str) -> bool:
    hint = field_types()[name]
    return Path in (hint, *typing.get_args(hint))


def _from_json(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "classes":
        return _CLASS_WORDS.validate_python(value)
    if _is_path_field(name):
        return Path(value)
    return tuple(value) if isinstance(value, list) else value


def read_classes(text: str) -> ClassWords:
    """`--classes`: a JSON object of label -> {"name", "finding"}, or the path of a file holding one."""
    source = text if text.lstrip().startswith("{") else _read_file(Path(text))
    try:
        return _CLASS_WORDS.validate_json(source)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"--classes is not label -> {{name, finding}}: {where}: {first['msg']}") from None


def _read_file(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"--classes is neither a JSON object nor a file: {path}")
    return path.read_text()


def validate(config: TrainConfig) -> None:
    """Refuse settings that cannot work, with one line naming the problem."""
    choices = {
        "architecture": ARCHITECTURES,
        "dataset": DATASETS,
        "label_source": LABEL_SOURCES,
        "resize_method": RESIZE_METHODS,
        "flip": FLIPS,
        "equalize": EQUALIZE,
    }
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ConfigError(f"unknown {name} {getattr(config, name)!r}; choose one of {', '.join(allowed)}")
    if config.channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, not {config.channels}")
    if config.dataset == "image-csv" and config.labels_csv is None:
        raise ConfigError("dataset image-csv needs --labels-csv")
    if config.label_source == "filename" and not config.classes:
        raise ConfigError("label_source filename needs --classes: the words of the file names that are labels")
    if len(config.split_ratios) not in (2, 3) or min(config.split_ratios) <= 0:
        raise ConfigError(
            "split_ratios must be two (train,test) or three (train,val,test) positive fractions, "
            f"not {config.split_ratios}"
        )
    if config.architecture == "resnet101v2" and config.image_size < 32:
        raise ConfigError(f"resnet101v2 needs image_size >= 32, not {config.image_size}")
    if not 0.5 <= config.ood_val_quantile <= 1.0:
        raise ConfigError(f"ood_val_quantile must be within [0.5, 1], not {config.ood_val_quantile}")
    if config.pretrained_weights is not None and not config.pretrained_weights.is_file():
        raise ConfigError(f"pretrained weights file not found: {config.pretrained_weights}")
    if config.init_weights is not None and not config.init_weights.is_file():
        raise ConfigError(f"initial weights file not found: {config.init_weights}")
