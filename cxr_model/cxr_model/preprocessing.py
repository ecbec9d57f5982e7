"""A decoded image -> one row of model input, exactly as a model card's `preprocessing` describes.

Training and serving both call these, so the pixels a model was trained on and the pixels it
is served cannot drift apart.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from cxr_model.card import Preprocessing
from cxr_model.images import DEFAULT_MAX_PIXELS, decode_image, to_8bit

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def center_square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centred square: the `center_square` crop."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


# the body crop's working size: enough to find the body, small enough to cost under a millisecond
BODY_THUMBNAIL = 64
BODY_MARGIN = 0.04  # of the body's side, on each side
MIN_BODY_SHARE = 0.05  # of the thumbnail: below it no body is found and the centre square is kept


def otsu_threshold(grey: np.ndarray) -> int:
    """The grey level that best splits a uint8 image's histogram in two (Otsu 1979)."""
    counts = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    below = np.cumsum(counts)
    above = below[-1] - below
    weighted = np.cumsum(counts * np.arange(256))
    mean_below = weighted / np.maximum(below, 1)
    mean_above = (weighted[-1] - weighted) / np.maximum(above, 1)
    return int(np.argmax((below * above * (mean_below - mean_above) ** 2)[:-1]))


def body_square_box(image: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the square around the body: the pixels brighter than Otsu's
    threshold (1st to 99th percentile of their positions, so stray text does not stretch it), plus a
    margin. It may reach past the image (padded black), so the body keeps its shape and fills the
    square whatever the framing; without a body, the `center_square` crop."""
    thumbnail = image.convert("L")
    thumbnail.thumbnail((BODY_THUMBNAIL, BODY_THUMBNAIL), Image.Resampling.BOX)
    grey = np.asarray(thumbnail)
    rows, columns = np.nonzero(grey > otsu_threshold(grey))
    if rows.size < MIN_BODY_SHARE * grey.size:
        return center_square_box(*image.size)
    left, right = np.percentile(columns, [1, 99]) + np.array([0, 1])
    top, bottom = np.percentile(rows, [1, 99]) + np.array([0, 1])
    scale = image.size[0] / grey.shape[1]
    side = max(right - left, bottom - top) * (1 + 2 * BODY_MARGIN) * scale
    centre_x, centre_y = (left + right) / 2 * scale, (top + bottom) / 2 * scale
    left_edge, top_edge = round(centre_x - side / 2), round(centre_y - side / 2)
    return left_edge, top_edge, left_edge + round(side), top_edge + round(side)


def crop_box(image: Image.Image, crop: str) -> tuple[int, int, int, int]:
    """The part of `image` a preprocessing `crop` keeps, in its pixels."""
    if crop == "center_square":
        return center_square_box(*image.size)
    if crop == "body_square":
        return body_square_box(image)
    return 0, 0, *image.size


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """One decoded image -> an HWC array ready to be batched."""
    image = to_8bit(image).convert("L" if spec.color_mode == "grayscale" else "RGB")
    if spec.crop != "none":
        image = image.crop(crop_box(image, spec.crop))
    size = (spec.resize.width, spec.resize.height)
    if image.size != size:
        image = image.resize(size, resample=_RESAMPLING[spec.resize.method])
    if spec.equalize == "histogram":
        image = ImageOps.equalize(image)
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] != spec.channels:
        pixels = np.repeat(pixels[:, :, :1], spec.channels, axis=2)
    return (pixels * spec.scale + spec.offset).astype(spec.dtype)


def preprocess_bytes(data: bytes, spec: Preprocessing, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An image file (JPEG, PNG, DICOM) -> model input; `images.ImageError` for what cannot be read."""
    return preprocess(decode_image(data, max_pixels), spec)


def preprocess_array(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """An already-decoded uint8 grey (H, W) or colour (H, W, 3) array, as training reads them."""
    return preprocess(Image.fromarray(pixels), spec)
