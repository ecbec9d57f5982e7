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


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """One decoded image -> an HWC array ready to be batched."""
    image = to_8bit(image).convert("L" if spec.color_mode == "grayscale" else "RGB")
    if spec.crop == "center_square":
        image = image.crop(center_square_box(*image.size))
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
