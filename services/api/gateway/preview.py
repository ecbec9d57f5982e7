"""Images a browser can show: JPEG and PNG as they are, DICOM rendered to an 8-bit PNG.

A DICOM rendering follows the display pipeline of PS3.4 N.2 in its simplest form: the
modality LUT (rescale slope and intercept), then the first VOI window of the file
(linear; a file without one is stretched between its 0.5th and 99.5th percentiles), then
MONOCHROME1 inverted so that air is black as in every other image. Only the first frame
is shown. The rendering is for looking at the image, never for diagnosis.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut, pixel_array

from gateway import dicom
from gateway.classification import detect_image_type
from gateway.errors import ProblemError

PNG = "image/png"
_BROWSER_IMAGES = {"image/jpeg", PNG}
_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Preview:
    data: bytes
    media_type: str


def preview_of(data: bytes) -> Preview:
    """A browser-viewable image of an upload or stored image; 4xx problems for what cannot be shown."""
    media_type, _ = detect_image_type(data)
    if media_type in _BROWSER_IMAGES:
        return Preview(data, media_type)
    return Preview(render_dicom(data), PNG)


def render_dicom(data: bytes) -> bytes:
    dataset = dicom.read_image(data)
    try:
        pixels = pixel_array(dataset, index=0)  # decode the first frame only, not every frame of a multi-frame file
    except Exception as exc:  # pydicom raises many kinds: missing decoders, truncated data, bad attributes
        raise ProblemError(422, "dicom_not_renderable", f"the DICOM image cannot be rendered: {exc}") from exc
    if dataset.get("SamplesPerPixel", 1) == 3:
        return _png(Image.fromarray(pixels.astype(np.uint8), "RGB"))
    values = apply_modality_lut(pixels, dataset).astype(np.float64)
    grey = _windowed(values, dataset)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        grey = 255 - grey
    return _png(Image.fromarray(grey, "L"))


def _windowed(values: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray:
    """8-bit grey levels: the file's first VOI window, or a percentile stretch."""
    window = _first_window(dataset)
    if window:
        center, width = window
        low, high = center - width / 2, center + width / 2
    else:
        low, high = np.percentile(values, _PERCENTILES)
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return (np.clip((values - low) / (high - low), 0, 1) * 255).round().astype(np.uint8)


def _first_window(dataset: pydicom.Dataset) -> tuple[float, float] | None:
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        center, width = _first_value(center), _first_value(width)
    except (TypeError, ValueError, IndexError):
        return None
    return (center, width) if width > 0 else None


def _first_value(value) -> float:
    return float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=6)
    return buffer.getvalue()

