"""The report's gallery: the test images the model got most wrong, each with the heatmap of the
label it gave (class activation maps, as the service draws them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from cxr_model.card import ModelCard
from trainer.evaluate import PerImageScores
from trainer.export import onnx_outputs
from trainer.model import cam_feature_maps, classifier_kernel, trust_model
from trainer.trust import class_activation_maps

GALLERY_SIZE = 8
HeatmapsOf = Callable[[np.ndarray], np.ndarray | None]  # images -> (N, C, h, w) class activation maps


@dataclass(frozen=True)
class GalleryImage:
    image: np.ndarray  # (H, W) as the model saw it
    heatmap: np.ndarray | None  # (h, w), of the decided label; None where the model has no CAM
    caption: str


def worst_error_gallery(
    scores: PerImageScores | None,
    images: np.ndarray,
    labels: Sequence[str],
    heatmaps_of: HeatmapsOf,
    count: int = GALLERY_SIZE,
) -> list[GalleryImage]:
    if scores is None:
        return []
    rows = scores.worst_errors(count)
    if not rows:
        return []
    maps = heatmaps_of(images[rows])
    gallery = []
    for position, row in enumerate(rows):
        truth, decided = scores.label_ids[row], scores.decided_ids[row]
        source = "" if scores.sources is None else f" ({scores.sources[row]})"
        caption = f"true {labels[truth]}{source}\ngiven {labels[decided]}, p {scores.probabilities[row][decided]:.2f}"
        heatmap = None if maps is None else maps[position, decided]
        gallery.append(GalleryImage(images[row].mean(axis=-1), heatmap, caption))
    return gallery


def keras_heatmaps(model: keras.Model) -> HeatmapsOf:
    if cam_feature_maps(model) is None:
        return lambda images: None
    extractor, kernel = trust_model(model), classifier_kernel(model)

    def heatmaps(images: np.ndarray) -> np.ndarray:
        return class_activation_maps(np.asarray(extractor([images], training=False)["feature_maps"]), kernel)

    return heatmaps


def onnx_heatmaps(model_bytes: bytes, card: ModelCard) -> HeatmapsOf:
    if card.explanation is None:
        return lambda images: None
    output = card.explanation.output
    return lambda images: onnx_outputs(model_bytes, images, [output])[output]
