"""Calibration (temperature scaling), class-activation maps and the out-of-distribution guard.

numpy / scipy only: the same arithmetic the exported ONNX graph carries (export.py) and
the inference service applies (inference.trust), so each can be checked against the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from inference.card import Preprocessing
from inference.preprocessing import preprocess_array, preprocess_bytes
from inference.trust import calibrate
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score

CT_SLICE = Path("dicom") / "CT_small.dcm"  # under the data folder
# scikit-image sample images that ship inside the wheel (others need a download)
NATURAL_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "cell",
    "checkerboard",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "shepp_logan_phantom",
    "text",
)
FACES = 40  # of scikit-image's 25x25 LFW faces
BLANK_LEVELS = (0, 32, 64, 96, 128, 160, 192, 224, 255)
NOISE_IMAGES = 20  # per kind (uniform, gaussian)
INVERTED_IMAGES = 100  # of the test split
SHRINKAGE = 0.01  # of the mean variance, added to the covariance's diagonal (dead ReLU units)


# --- calibration ------------------------------------------------------------------------


def negative_log_likelihood(labels: np.ndarray, probabilities: np.ndarray) -> float:
    rows = np.arange(len(labels))
    return float(-np.mean(np.log(np.clip(probabilities[rows, labels], 1e-12, 1.0))))


def fit_temperature(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature T minimising the NLL of softmax(log(p) / T) (searched on log T)."""
    labels = np.asarray(labels).reshape(-1)

    def loss(log_temperature: float) -> float:
        return negative_log_likelihood(labels, calibrate(probabilities, float(np.exp(log_temperature))))

    result = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


# --- class-activation maps --------------------------------------------------------------


def class_activation_maps(feature_maps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """CAM: (N, h, w, K) feature maps and the (K, C) classifier kernel -> (N, C, h, w),
    map_c = sum_k kernel[k, c] * A_k. Their spatial mean plus the bias is the class logit."""
    return np.einsum("nhwk,kc->nchw", feature_maps.astype(np.float64), kernel.astype(np.float64))


# --- out-of-distribution guard ----------------------------------------------------------


@dataclass(frozen=True)
class Mahalanobis:
    """Class means and a shared (tied) precision matrix of the embeddings, from the train split."""

    means: np.ndarray  # (C, K)
    precision: np.ndarray  # (K, K)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Distance to the nearest class mean: sqrt(min_c (e - mu_c)^T P (e - mu_c))."""
        differences = embeddings.astype(np.float64)[:, None, :] - self.means[None]
        squared = np.einsum("nck,kl,ncl->nc", differences, self.precision, differences)
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))

    def save(self, path: Path) -> None:
        np.savez(path, means=self.means, precision=self.precision)

    @classmethod
    def load(cls, path: Path) -> Mahalanobis:
        with np.load(path) as stored:
            return cls(means=stored["means"], precision=stored["precision"])


def fit_mahalanobis(embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> Mahalanobis:
    embeddings = embeddings.astype(np.float64)
    labels = np.asarray(labels).reshape(-1)
    means = np.stack([embeddings[labels == label].mean(axis=0) for label in range(num_classes)])
    centred = embeddings - means[labels]
    covariance = centred.T @ centred / len(embeddings)
    covariance += SHRINKAGE * np.mean(np.diag(covariance)) * np.eye(len(covariance))
    return Mahalanobis(means=means, precision=np.linalg.inv(covariance))


def ood_threshold(val_scores: np.ndarray, val_quantile: float) -> float:
    """The score above which an input is flagged: `val_quantile` of val stays unflagged."""
    return float(np.quantile(val_scores, val_quantile))


def ood_metrics(in_scores: np.ndarray, out_scores: dict[str, np.ndarray], threshold: float) -> dict:
    """AUROC of in (test split) vs all out-of-distribution images, and who gets flagged."""
    everything_out = np.concatenate(list(out_scores.values()))
    labels = np.r_[np.zeros(len(in_scores)), np.ones(len(everything_out))]
    return {
        "auroc": float(roc_auc_score(labels, np.r_[in_scores, everything_out])),
        "test_false_flag_rate": float(np.mean(in_scores > threshold)),
        "out_flag_rate": float(np.mean(everything_out > threshold)),
        "n_in": len(in_scores),
        "n_out": len(everything_out),
        "out_flag_rate_by_kind": {kind: float(np.mean(scores > threshold)) for kind, scores in out_scores.items()},
        "out_count_by_kind": {kind: len(scores) for kind, scores in out_scores.items()},
    }


def out_of_distribution_images(
    spec: Preprocessing, data_dir: Path, test_images: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Images a chest X-ray model must not be trusted on, by kind, through the serving preprocessing.

    `test_images` are the test split as the model sees them (their inverted copies are one kind).
    """
    rng = np.random.default_rng(seed)
    ct_slice = data_dir / CT_SLICE
    kinds = {
        "ct_slice": [preprocess_bytes(ct_slice.read_bytes(), spec)] if ct_slice.is_file() else [],
        "natural": [preprocess_array(image, spec) for image in _natural_images(rng)],
        "blank": [preprocess_array(np.full((64, 64), level, np.uint8), spec) for level in BLANK_LEVELS],
        "uniform_noise": [
            preprocess_array(rng.integers(0, 256, (256, 256), dtype=np.uint8), spec) for _ in range(NOISE_IMAGES)
        ],
        "gaussian_noise": [
            preprocess_array(np.clip(rng.normal(128, 50, (256, 256)), 0, 255).astype(np.uint8), spec)
            for _ in range(NOISE_IMAGES)
        ],
        "inverted_test": [
            preprocess_array((255 - test_images[index, :, :, 0]).astype(np.uint8), spec)
            for index in rng.permutation(len(test_images))[:INVERTED_IMAGES]
        ],
    }
    return {kind: np.stack(images) for kind, images in kinds.items() if images}


def _natural_images(rng: np.random.Generator) -> list[np.ndarray]:
    import skimage.data  # training-only dependency, only needed here

    images = [_as_uint8(getattr(skimage.data, name)()) for name in NATURAL_IMAGES]
    faces = skimage.data.lfw_subset()
    return images + [_as_uint8(faces[index]) for index in rng.permutation(len(faces))[:FACES]]


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """scikit-image returns bool, float 0..1 or uint8 arrays; RGBA loses its alpha."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype.kind == "f":
        image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return image[..., :3] if image.ndim == 3 else image
