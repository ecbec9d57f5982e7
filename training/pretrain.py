"""Self-supervised pretraining here, from images that are here (no weights can be downloaded):
the trainer's network learns to tell by how many quarter turns an unlabelled chest image was
rotated (RotNet, Gidaris et al. 2018), which it can only do by learning what chest anatomy looks
like. The weights are saved as an .npz that `python -m trainer train --init-weights` starts from
(layers with the same name and shape; the softmax layer, 4 rotations here, is not copied).

    python training/pretrain.py --data-dir ../shared/data --out /tmp/ct/pretrained.npz \\
        --image-size 64 --filters 16,32,64 --epochs 8

Images: chest X-rays (`adult-cxr/`, `samples/`, MedNIST `CXR`), MedNIST `ChestCT`, and the severity
slices of the training volumes. None of `covid-ct/` or `sars-cov-2-ct/` and no held-out severity
volume is used, so no test image of any CT experiment is seen here, not even unlabelled.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from prepare_ct import PRETRAINING_VOLUMES

from cxr_model.preprocessing import preprocess_bytes
from trainer.config import TrainConfig
from trainer.data import image_files, preprocessing_spec
from trainer.fit import fix_seeds
from trainer.model import build_model, compile_model, layer_weights

FOLDERS = ("adult-cxr", "samples", "other-images/mednist/CXR", "other-images/mednist/ChestCT")
ROTATIONS = 4
log = logging.getLogger("pretrain")


def pretraining_images(data_dir: Path) -> list[Path]:
    severity = data_dir / "covid-ct-severity"
    rows = (severity / "labels.csv").read_text().splitlines()[1:]
    training_slices = [severity / row.split(",")[0] for row in rows if int(row.split(",")[1]) in PRETRAINING_VOLUMES]
    return [path for folder in FOLDERS for path in image_files(data_dir / folder)] + training_slices


def rotated(images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each image turned by a random number of quarter turns; that number is its label."""
    turns = rng.integers(0, ROTATIONS, size=len(images))
    return np.stack([np.rot90(image, k) for image, k in zip(images, turns, strict=True)]), turns.astype(np.int32)


def pretrain(config: TrainConfig, images: np.ndarray, epochs: int) -> dict[str, np.ndarray]:
    fix_seeds(config.seed)
    model = build_model(config, ROTATIONS)
    compile_model(model, config)
    rng = np.random.default_rng(config.seed)
    validation = rotated(images[: len(images) // 10], rng)
    fitted = images[len(images) // 10 :]
    for epoch in range(epochs):
        turned, turns = rotated(fitted, rng)
        history = model.fit(
            turned, turns, batch_size=config.batch_size, epochs=1, verbose=0, validation_data=validation
        )
        log.info(
            "epoch %d/%d %s", epoch + 1, epochs, {key: round(values[-1], 4) for key, values in history.history.items()}
        )
    return layer_weights(model)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--filters", default="16,32,64")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--max-images", type=int, default=None)
    arguments = parser.parse_args()
    # no rotation augmentation: turning the image is the task; no brightness: with batch
    # normalisation it makes the statistics of training and inference differ
    config = TrainConfig(
        image_size=arguments.image_size,
        filters=tuple(int(width) for width in arguments.filters.split(",")),
        rotation=0.0,
        shear=0.0,
        brightness=0.0,
        batch_size=64,
    )
    paths = np.random.default_rng(config.seed).permutation(pretraining_images(arguments.data_dir))
    paths = paths[: arguments.max_images]
    spec = preprocessing_spec(config.image_size)
    images = np.stack([preprocess_bytes(Path(path).read_bytes(), spec) for path in paths])
    log.info("%d images", len(images))
    weights = pretrain(config, images, arguments.epochs)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(arguments.out, **weights)
    log.info("wrote %s (%d arrays)", arguments.out, len(weights))


if __name__ == "__main__":
    main()
