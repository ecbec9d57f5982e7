"""What makes a probability trustworthy: calibration, an explanation heatmap, an OOD flag.

Plain numpy on the model's outputs; training imports `calibrate` too, so the temperature
it fits is applied here exactly as it was evaluated.
"""

from __future__ import annotations

import numpy as np

_SMALLEST_PROBABILITY = 1e-12  # log(0) would be -inf: a probability the model cannot quite give


def calibrate(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling on probabilities: softmax(log(p) / T) along the last axis.

    log(p) equals the logits up to a per-row constant, which softmax ignores.
    """
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _SMALLEST_PROBABILITY, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def normalised_heatmap(class_activation: np.ndarray) -> np.ndarray:
    """One raw class-activation map (h, w) -> 0..1 (min to max); a flat map is all zeros."""
    heatmap = np.asarray(class_activation, dtype=np.float64)
    low, high = float(heatmap.min()), float(heatmap.max())
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return np.zeros_like(heatmap)
    return (heatmap - low) / (high - low)
