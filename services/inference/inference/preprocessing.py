"""Image file -> model input, exactly as a model card's `preprocessing` describes.

Training imports these functions too, so the two sides cannot drift apart.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from inference.card import Preprocessing

SUPPORTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "DICOM": "application/dicom"}
DEFAULT_MAX_PIXELS = 40_000_000

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


class ImageError(ValueError):
    """The bytes are not an image this service can read; `code` is machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def sniff_media_type(data: bytes) -> str | None:
    """The media type told by the file's magic bytes, or None if unsupported."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[128:132] == b"DICM":  # a DICOM file: 128-byte preamble, then the magic
        return "application/dicom"
    return None


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode JPEG, PNG or DICOM bytes fully, refusing anything else or anything too large."""
    if not data:
        raise ImageError("empty_file", "the file is empty")
    media_type = sniff_media_type(data)
    if media_type is None:
        raise ImageError("unsupported_media_type", "the file is not a JPEG, PNG or DICOM image")
    if media_type == "application/dicom":
        return decode_dicom(data, max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageError(
                    "image_too_large",
                    f"the image has {width}x{height} pixels; at most {max_pixels} are accepted",
                )
            probe.load()
            image = ImageOps.exif_transpose(probe)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # dimensions far beyond max_pixels: too large, not corrupt
        raise ImageError("image_too_large", f"the image is too large: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError("corrupt_image", f"the image cannot be decoded: {exc}") from exc
    return image


def decode_dicom(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The first frame as an 8-bit image, shown as a radiologist's viewer would show it."""
    from pydicom.pixels import pixel_array  # imported here, as in _read_dicom

    dataset = _read_dicom(data)
    width, height = int(dataset.get("Columns", 0)), int(dataset.get("Rows", 0))
    if width * height > max_pixels:
        raise ImageError("image_too_large", f"the image has {width}x{height} pixels; at most {max_pixels} are accepted")
    try:  # only the first frame: decoding all of a multi-frame file could take gigabytes
        pixels = pixel_array(dataset, index=0)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for pixel data it cannot decode
        raise ImageError("corrupt_image", f"the DICOM pixel data cannot be decoded: {exc}") from exc
    if dataset.get("SamplesPerPixel", 1) != 1:  # colour DICOM (rare for X-rays) holds display values
        return Image.fromarray(pixels.astype(np.uint8))
    try:
        return Image.fromarray(_display_grey(dataset, pixels))
    except ValueError as exc:  # e.g. a RescaleSlope or WindowCenter that is not a number
        raise ImageError("corrupt_image", f"the DICOM display attributes are invalid: {exc}") from exc


_DISPLAY_ATTRIBUTES = (
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
)


def _read_dicom(data: bytes):
    import pydicom  # imported here, not at the top: training imports this module and never reads DICOM

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        for keyword in _DISPLAY_ATTRIBUTES:  # values are parsed lazily: parse the used ones here
            dataset.get(keyword)
    except (
        pydicom.errors.InvalidDicomError,
        pydicom.errors.BytesLengthException,
        OSError,
        ValueError,
        EOFError,
    ) as exc:
        raise ImageError("corrupt_image", f"the DICOM file cannot be read: {exc}") from exc
    if "PixelData" not in dataset:
        raise ImageError("dicom_without_pixel_data", "the DICOM file holds no image (it has no pixel data)")
    return dataset


def _display_grey(dataset, pixels: np.ndarray) -> np.ndarray:
    """Stored values -> Modality LUT (rescale slope/intercept) -> VOI window -> 0..255.

    The window is WindowCenter/WindowWidth when the file gives one, else the frame's own
    min..max; MONOCHROME1 images are inverted (there, low values are bright).
    """
    slope, intercept = float(dataset.get("RescaleSlope") or 1), float(dataset.get("RescaleIntercept") or 0)
    values = pixels.astype(np.float64) * slope + intercept
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if center is not None and width is not None:
        center, width = _first_value(center), _first_value(width)
        low, high = center - width / 2, center + width / 2
    else:
        low, high = float(values.min()), float(values.max())
    grey = np.clip((values - low) / max(high - low, 1e-9), 0.0, 1.0) * 255.0
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        grey = 255.0 - grey
    return np.round(grey).astype(np.uint8)


def _first_value(value) -> float:
    """A DICOM attribute may hold several values (several windows); the first is the default."""
    from pydicom.multival import MultiValue

    return float(value[0] if isinstance(value, MultiValue) else value)


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey images are stretched to 0..255 by their own range."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return image
    pixels = np.asarray(image, dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    span = high - low if high > low else 1.0
    return Image.fromarray(np.round((pixels - low) / span * 255.0).astype(np.uint8), mode="L")


def _center_square(image: Image.Image) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """One decoded image -> an HWC float array ready to be batched."""
    image = _to_8bit(image)
    image = image.convert("L" if spec.color_mode == "grayscale" else "RGB")
    if spec.crop == "center_square":
        image = _center_square(image)
    size = (spec.resize.width, spec.resize.height)
    if image.size != size:
        image = image.resize(size, resample=_RESAMPLING[spec.resize.method])
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] != spec.channels:
        pixels = np.repeat(pixels[:, :, :1], spec.channels, axis=2)
    return (pixels * spec.scale + spec.offset).astype(spec.dtype)


def preprocess_bytes(data: bytes, spec: Preprocessing, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    return preprocess(decode_image(data, max_pixels), spec)


def preprocess_array(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """An already-decoded uint8 grey (H, W) or colour (H, W, 3) array, as training reads them."""
    return preprocess(Image.fromarray(pixels), spec)
