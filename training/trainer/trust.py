"""Calibration (temperature scaling), class-activation maps and the out-of-distribution guard.

numpy / scipy only: the same arithmetic the exported ONNX graph carries (export.py) and
the inference service applies (cxr_model.trust), so each can be checked against the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score

from cxr_model.card import OutOfDistribution, Preprocessing
from cxr_model.preprocessing import preprocess_array, preprocess_bytes
from cxr_model.trust import calibrate

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


def negative_log_likelihood(label_ids: np.ndarray, probabilities: np.ndarray) -> float:
    rows = np.arange(len(label_ids))
    return float(-np.mean(np.log(np.clip(probabilities[rows, label_ids], 1e-12, 1.0))))


def fit_temperature(label_ids: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature T minimising the NLL of softmax(log(p) / T) (searched on log T)."""
    label_ids = np.asarray(label_ids).reshape(-1)

    def loss(log_temperature: float) -> float:
        return negative_log_likelihood(label_ids, calibrate(probabilities, float(np.exp(log_temperature))))

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


def fit_mahalanobis(embeddings: np.ndarray, label_ids: np.ndarray, num_classes: int) -> Mahalanobis:
    embeddings = embeddings.astype(np.float64)
    label_ids = np.asarray(label_ids).reshape(-1)
    means = np.stack([embeddings[label_ids == label].mean(axis=0) for label in range(num_classes)])
    centred = embeddings - means[label_ids]
    covariance = centred.T @ centred / len(embeddings)
    covariance += SHRINKAGE * np.mean(np.diag(covariance)) * np.eye(len(covariance))
    return Mahalanobis(means=means, precision=np.linalg.inv(covariance))


def ood_threshold(val_scores: np.ndarray, val_quantile: float) -> float:
    """The score above which an input is flagged: `val_quantile` of val stays unflagged."""
    return float(np.quantile(val_scores, val_quantile))


class OodMetrics(BaseModel):
    """The guard on test images (in distribution) against out-of-distribution ones."""

    auroc: float
    test_false_flag_rate: float
    out_flag_rate: float
    n_in: int
    n_out: int
    out_flag_rate_by_kind: dict[str, float]
    out_count_by_kind: dict[str, int]
    val_flag_rate: float | None = None
    # does the flag single out wrong answers: accuracy of the decided labels on flagged / unflagged test images
    test_flagged: int | None = None
    test_accuracy_flagged: float | None = None
    test_accuracy_unflagged: float | None = None
    test_flag_rate_by_source: dict[str, float] = {}

    def for_card(self) -> dict[str, float]:
        """The headline figures; the report keeps the breakdowns by kind of image and by source."""
        breakdowns = {"out_flag_rate_by_kind", "out_count_by_kind", "test_flag_rate_by_source"}
        figures = self.model_dump(exclude=breakdowns, exclude_none=True)
        return {key: float(value) for key, value in figures.items()}


class OodEvaluation(BaseModel):
    method: str = "mahalanobis"
    threshold: float
    fitted_on: str = "train"
    threshold_on: str = "val"
    metrics: OodMetrics
    # the scores behind the metrics, for the report's histogram: "test" (or "test: <source>") and each out kind
    scores: dict[str, list[float]] = {}

    def for_card(self, output: str) -> OutOfDistribution:
        return OutOfDistribution(
            output=output,
            threshold=self.threshold,
            fitted_on=self.fitted_on,
            threshold_on=self.threshold_on,
            metrics=self.metrics.for_card(),
        )


def ood_metrics(
    in_scores: np.ndarray,
    out_scores: dict[str, np.ndarray],
    threshold: float,
    val_scores: np.ndarray | None = None,
) -> OodMetrics:
    """AUROC of in (test split) vs all out-of-distribution images, and who gets flagged."""
    everything_out = np.concatenate(list(out_scores.values()))
    truth = np.r_[np.zeros(len(in_scores)), np.ones(len(everything_out))]
    return OodMetrics(
        auroc=float(roc_auc_score(truth, np.r_[in_scores, everything_out])),
        test_false_flag_rate=float(np.mean(in_scores > threshold)),
        out_flag_rate=float(np.mean(everything_out > threshold)),
        n_in=len(in_scores),
        n_out=len(everything_out),
        out_flag_rate_by_kind={kind: float(np.mean(scores > threshold)) for kind, scores in out_scores.items()},
        out_count_by_kind={kind: len(scores) for kind, scores in out_scores.items()},
        val_flag_rate=None if val_scores is None else float(np.mean(val_scores > threshold)),
    )


def test_flag_figures(flagged: np.ndarray, correct: np.ndarray | None, sources: np.ndarray | None) -> dict[str, object]:
    """The OodMetrics fields about test images: how many are flagged, the accuracy on the flagged and
    the unflagged ones (None where there are none), and the flag rate of each source."""
    figures: dict[str, object] = {"test_flagged": int(flagged.sum())}
    if correct is not None:
        figures["test_accuracy_flagged"] = float(correct[flagged].mean()) if flagged.any() else None
        figures["test_accuracy_unflagged"] = float(correct[~flagged].mean()) if (~flagged).any() else None
    if sources is not None:
        figures["test_flag_rate_by_source"] = {
            str(source): float(flagged[sources == source].mean()) for source in np.unique(sources)
        }
    return figures


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
