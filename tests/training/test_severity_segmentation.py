"""The severity-from-segmentation prototype (`training/severity_segmentation.py`, not shipped: its report is
training/reports/severity-segmentation/): the grade follows the infected share of the lung as the data defines
it, the U-Net keeps the image grid, and small volumes are shown more often."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from trainer.config import REPO_ROOT


@pytest.fixture(scope="module")
def segmentation():
    sys.path.insert(0, str(REPO_ROOT / "training"))  # the scripts import each other by name
    return importlib.import_module("severity_segmentation")  # by name: its dataclasses need their module


def _masks(lung: np.ndarray, infection: np.ndarray) -> np.ndarray:
    return np.stack([lung, infection], axis=-1).astype("float32")[None]


def test_the_grade_is_the_band_of_the_infected_share_of_the_lung(segmentation):
    lung = np.zeros((8, 8), "float32")
    lung[:, :4] = 1.0  # 32 lung pixels
    infection = np.zeros((8, 8), "float32")
    infection[:3, :4] = 1.0  # 12 of them infected
    infection[:, 6:] = 1.0  # outside the lung: not counted
    for method in segmentation.FRACTION_METHODS:
        share = np.asarray(segmentation.infected_fraction(_masks(lung, infection), method, 0.5, 0.5))
        assert share == pytest.approx([12 / 32]), method
    shares = np.array([0.0, 0.2499, 0.25, 0.4999, 0.5, 1.0])
    assert segmentation.grade_of(shares).tolist() == [0, 0, 1, 1, 2, 2]  # mild, moderate, severe


def test_dice_of_masks_pooled_and_per_slice(segmentation):
    truth = np.zeros((2, 4, 4))
    truth[0, :2] = 1.0  # 8 pixels
    predicted = np.zeros((2, 4, 4))
    predicted[0, :1] = 0.9  # 4 of them found
    dice = segmentation.mask_dice(truth, predicted, 0.5)
    assert dice["pooled"] == pytest.approx(2 * 4 / 12)
    assert dice["mean_per_slice"] == pytest.approx((2 * 4 / 12 + 1.0) / 2)  # an empty slice predicted empty: 1


def test_small_volumes_are_repeated_up_to_the_cap(segmentation):
    volumes = np.array([0] * 40 + [1] * 40 + [2] * 10 + [3] * 1)
    repeats = segmentation.volume_repeats(volumes, cap=8)
    assert set(repeats[:80]) == {1} and set(repeats[80:90]) == {2} and repeats[-1] == 8


def test_the_unet_gives_lung_and_infection_probabilities_on_the_image_grid(segmentation):
    model = segmentation.build_unet(32, (4, 8, 16))
    masks = np.asarray(model(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 1)).astype("float32")))
    assert masks.shape == (2, 32, 32, 2)
    assert masks.min() >= 0.0 and masks.max() <= 1.0
