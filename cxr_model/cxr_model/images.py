"""Image files as the service accepts them: what kind a file is, and its pixels as displayed.

One decoder for every consumer: the model's input and the preview a clinician sees are made
by `decode_image` from the same bytes, so they cannot show different pictures.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import pydicom
import pydicom.errors
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

DEFAULT_MAX_PIXELS = 40_000_000

MediaType = Literal["image/jpeg", "image/png", "application/dicom"]
JPEG: MediaType = "image/jpeg"
PNG: MediaType = "image/png"
DICOM: MediaType = "application/dicom"
EXTENSIONS: dict[MediaType, str] = {JPEG: "jpg", PNG: "png", DICOM: "dcm"}

# the stretch of a DICOM that carries no VOI window or LUT: robust to a few extreme pixels
_UNWINDOWED_PERCENTILES = (0.5, 99.5)
# pixels of a frame turned into display values at a time: pydicom's LUT functions compute in float64,
# which for a whole 40-megapixel frame would take hundreds of MiB
_STRIPE_PIXELS = 1 << 20


class ImageError(ValueError):
    """The bytes are not an image that can be read; `code` says why, machine-readably.

    Codes: empty_file, unsupported_media_type, image_too_large, corrupt_image,
    dicom_without_pixel_data, unsupported_transfer_syntax.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def sniff_media_type(data: bytes) -> MediaType | None:
    """The media type told by the file's magic bytes (never its name or a Content-Type), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data[128:132] == b"DICM":  # a DICOM file: 128-byte preamble, then the magic
        return DICOM
    return None


def media_type_of(data: bytes) -> MediaType:
    """Like `sniff_media_type`, but an ImageError for an empty or unsupported file."""
    if not data:
        raise ImageError("empty_file", "the file is empty")
    media_type = sniff_media_type(data)
    if media_type is None:
        raise ImageError("unsupported_media_type", "the file is not a JPEG, PNG or DICOM image")
    return media_type


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """JPEG, PNG or DICOM bytes -> the image as displayed (8-bit grey or RGB for DICOM).

    Files of more than `max_pixels` (a DICOM's Rows x Columns x frames) are refused from their
    header, before any pixel is decoded."""
    if media_type_of(data) == DICOM:
        return decode_dicom(read_dicom(data, max_pixels), max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            _check_size(probe.width, probe.height, max_pixels)
            probe.load()
            return ImageOps.exif_transpose(probe)
    except Image.DecompressionBombError as exc:  # dimensions far beyond max_pixels: too large, not corrupt
        raise ImageError("image_too_large", f"the image is too large: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError("corrupt_image", f"the image cannot be decoded: {exc}") from exc


def _check_size(width: int, height: int, max_pixels: int, frames: int = 1) -> None:
    if width * height * frames > max_pixels:
        size = f"{width}x{height}" + (f"x{frames} frames" if frames > 1 else "")
        raise ImageError("image_too_large", f"the image has {size} pixels; at most {max_pixels} are accepted")


def check_header_size(data: bytes, max_pixels: int) -> None:
    """An ImageError `image_too_large` when the file's header states more than `max_pixels` (a DICOM's
    Rows x Columns x frames), read without decoding any pixel; other problems are left to the decoder."""
    if media_type_of(data) == DICOM:
        check_dicom_size(read_dicom(data, max_pixels), max_pixels)
        return
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Image.DecompressionBombError as exc:
        raise ImageError("image_too_large", f"the image is too large: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return
    _check_size(width, height, max_pixels)


def check_dicom_size(dataset: Dataset, max_pixels: int) -> None:
    frames = dataset.get("NumberOfFrames")
    _check_size(int(dataset.get("Columns") or 0), int(dataset.get("Rows") or 0), max_pixels, int(frames or 1))


# Attributes parsed eagerly (pydicom parses values lazily, so a malformed one would otherwise
# fail later, in the middle of decoding).
_DISPLAY_ATTRIBUTES = (
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
    "PresentationLUTShape",
)
_READ_ERRORS = (
    pydicom.errors.InvalidDicomError,
    pydicom.errors.BytesLengthException,
    OSError,
    ValueError,
    EOFError,
    KeyError,
    TypeError,
    AttributeError,
)


def read_dicom(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Dataset:
    """The parsed DICOM file, which must hold pixel data.

    A deflated file is inflated here, to at most `inflation_limit(max_pixels)` bytes: pydicom
    would inflate it whole, and a few hundred KiB can inflate to gigabytes.
    """
    try:
        dataset = _parse(data, inflation_limit(max_pixels))
        dataset.file_meta.TransferSyntaxUID  # noqa: B018 - a file without one can be neither decoded nor rewritten
        for keyword in _DISPLAY_ATTRIBUTES:
            dataset.get(keyword)
    except _READ_ERRORS as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError("corrupt_image", f"the DICOM file cannot be read: {exc}") from exc
    if "PixelData" not in dataset:
        raise ImageError("dicom_without_pixel_data", "the DICOM file holds no image (it has no pixel data)")
    return dataset


def inflation_limit(max_pixels: int) -> int:
    """The most a deflated data set may inflate to: a first frame of `max_pixels` at 3 samples of
    16 bits each, and 1 MiB of attributes."""
    return 6 * max_pixels + 2**20


def _parse(data: bytes, max_inflated_bytes: int) -> Dataset:
    meta, body_offset = _file_meta(data)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return pydicom.dcmread(io.BytesIO(data))
    dataset = read_dataset(io.BytesIO(_inflate(data[body_offset:], max_inflated_bytes)), False, True)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian  # what the inflated data set is
    dataset.file_meta = meta
    return dataset


def _file_meta(data: bytes) -> tuple[FileMetaDataset, int]:
    """The file meta information (group 0002, always explicit VR little endian) and where it ends."""
    stream = io.BytesIO(data)
    stream.seek(132)  # preamble and magic
    meta = read_dataset(stream, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
    return FileMetaDataset(meta), stream.tell()


def _inflate(deflated: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = inflater.decompress(deflated, max_bytes + 1)
    if len(inflated) > max_bytes:
        raise ImageError("image_too_large", f"the deflated DICOM data inflates to more than {max_bytes} bytes")
    return inflated


def decode_dicom(dataset: Dataset, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The first frame as a radiologist's viewer shows it (PS3.4 N.2), in 8 bits.

    Stored values -> Modality LUT (rescale or LUT sequence) -> VOI LUT (the first window or
    LUT sequence, with its VOI LUT Function) -> presentation (MONOCHROME1 or a Presentation LUT
    Shape INVERSE: low values bright) -> 0..255. A file without a VOI transform is stretched
    between its 0.5th and 99.5th percentiles. Colour files (RGB, YBR, palette colour) are shown
    as RGB.
    """
    check_dicom_size(dataset, max_pixels)
    _check_decodable(dataset)
    try:  # only the first frame: decoding all of a multi-frame file could take gigabytes
        frame = pixel_array(dataset, index=0)
    except Exception as exc:
        raise ImageError("corrupt_image", f"the DICOM pixel data cannot be decoded: {exc}") from exc
    try:
        if str(dataset.get("PhotometricInterpretation") or "").strip() == "PALETTE COLOR":
            return Image.fromarray(_palette_rgb(dataset, frame), "RGB")
        if int(dataset.get("SamplesPerPixel") or 1) != 1:
            return Image.fromarray(_striped(frame, lambda rows: _to_8bit(rows, *_stored_range(dataset))), "RGB")
        return Image.fromarray(display_grey(dataset, frame), "L")
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ImageError("corrupt_image", f"the DICOM display attributes are invalid: {exc}") from exc


def _stripes(frame: np.ndarray) -> Iterator[slice]:
    """Slices of whole rows of the frame, of about `_STRIPE_PIXELS` each."""
    rows, columns = frame.shape[:2]
    step = max(1, _STRIPE_PIXELS // max(columns, 1))
    return (slice(start, start + step) for start in range(0, rows, step))


def _striped(frame: np.ndarray, to_display: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`to_display` (an element-wise map to 8 bits) applied stripe by stripe: the same pixels as on the
    whole frame at once, with temporaries the size of a stripe."""
    displayed: np.ndarray | None = None
    for rows in _stripes(frame):
        stripe = to_display(frame[rows])
        if displayed is None:
            displayed = np.empty(frame.shape[:2] + stripe.shape[2:], np.uint8)
        displayed[rows] = stripe
    return displayed if displayed is not None else to_display(frame)


def _palette_rgb(dataset: Dataset, frame: np.ndarray) -> np.ndarray:
    bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])
    # 8-bit entries in 16-bit words, which PS3.3 C.7.6.3.1.5 says some write
    if bits == 16 and max(int(apply_color_lut(frame[rows], dataset).max()) for rows in _stripes(frame)) < 256:
        bits = 8
    return _striped(frame, lambda rows: _to_8bit(apply_color_lut(rows, dataset), 0, 2**bits - 1))


def _check_decodable(dataset: Dataset) -> None:
    syntax = UID(str(dataset.file_meta.get("TransferSyntaxUID") or ExplicitVRLittleEndian))
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:  # a transfer syntax pydicom knows no decoder for (private ones, say)
        available = False
    if not available:
        name = syntax.name if syntax.is_transfer_syntax else "an unknown transfer syntax"
        raise ImageError(
            "unsupported_transfer_syntax",
            f"the DICOM pixel data is encoded as {name} ({syntax}), which this service cannot decode",
        )


def display_grey(dataset: Dataset, frame: np.ndarray) -> np.ndarray:
    """One grey frame of stored values -> 8-bit display values (see `decode_dicom`), a stripe at a time."""
    if _has_voi(dataset):
        low, high = _voi_output_range(dataset)
    else:
        low, high = _modality_percentiles(dataset, frame, _UNWINDOWED_PERCENTILES)
    grey = _striped(frame, lambda rows: _to_8bit(_displayed_values(dataset, rows), low, high))
    return np.subtract(255, grey, out=grey) if _inverted(dataset) else grey


def _displayed_values(dataset: Dataset, stored: np.ndarray) -> np.ndarray:
    """Stored values -> Modality LUT -> VOI LUT or window (when the file has one)."""
    values = apply_modality_lut(stored, dataset)
    if not _has_voi(dataset):
        return values
    if dataset.get("VOILUTSequence"):
        values = _lut_input(values, dataset.VOILUTSequence[0])
    return apply_voi_lut(values, dataset, index=0)


def _modality_percentiles(dataset: Dataset, frame: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """`np.percentile(apply_modality_lut(frame, dataset), percentiles)`, to the last bit, without the
    frame's modality values in memory: the Modality LUT maps equal stored values alike, so the order
    statistics follow from how often each stored value occurs."""
    stored, counts = _stored_value_counts(frame)
    values = np.asarray(apply_modality_lut(stored, dataset), dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranked, ends = values[order], np.cumsum(counts[order])  # ends[i]: the rank after the last of ranked[i]
    last = int(ends[-1]) - 1

    def at_rank(rank: int) -> np.float64:
        return ranked[np.searchsorted(ends, rank, side="right")]

    def percentile(q: float) -> float:  # numpy's "linear" method, computed as numpy computes it
        virtual = np.float64(last) * np.true_divide(q, 100)
        below = min(max(int(np.floor(virtual)), 0), last)
        weight = virtual - below
        a, b = at_rank(below), at_rank(min(below + 1, last))
        return float(b - (b - a) * (1 - weight) if weight >= 0.5 else a + (b - a) * weight)

    return percentile(percentiles[0]), percentile(percentiles[1])


def _stored_value_counts(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct stored values (in the frame's dtype) and how often each occurs."""
    if frame.dtype.kind not in "iu" or frame.dtype.itemsize > 2:
        return np.unique(frame, return_counts=True)
    unsigned = frame.view(frame.dtype.str.replace("i", "u"))  # a signed value v counted at v mod 2**bits
    counts = np.zeros(1 << (8 * frame.dtype.itemsize), np.int64)
    for rows in _stripes(unsigned):
        counts += np.bincount(unsigned[rows].ravel(), minlength=counts.size)
    offset = int(np.iinfo(frame.dtype).min)
    counts = np.roll(counts, -offset)  # index i: the value i + offset
    present = np.flatnonzero(counts)
    return (present + offset).astype(frame.dtype), counts[present]


def _has_voi(dataset: Dataset) -> bool:
    if dataset.get("VOILUTSequence"):
        return True
    return dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None


def _lut_input(values: np.ndarray, lut: Dataset) -> np.ndarray:
    """Whole values within the LUT's input range. pydicom 3.0 computes the LUT index in the
    LUT's own dtype, so with 8-bit entries an input beyond 255 above the first mapped value
    wraps around instead of taking the last entry; clipping first gives the standard's result."""
    entries, first_mapped = int(lut.LUTDescriptor[0]) or 2**16, int(lut.LUTDescriptor[1])
    return np.clip(np.rint(values), first_mapped, first_mapped + entries - 1).astype(np.int64)


def _voi_output_range(dataset: Dataset) -> tuple[float, float]:
    """The range of values `apply_voi_lut` maps into, which it does not return.

    A VOI LUT sequence (preferred when both are present) gives its entries' range; windowing
    gives the range of the modality LUT's output (PS3.3 C.11.2.1.2), as pydicom computes it.
    """
    if dataset.get("VOILUTSequence"):
        lut = dataset.VOILUTSequence[0]
        bits = int(lut.LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if dataset.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    low, high = _stored_range(dataset)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def _stored_range(dataset: Dataset) -> tuple[float, float]:
    bits = int(dataset.get("BitsStored") or dataset.get("BitsAllocated") or 8)
    if int(dataset.get("PixelRepresentation") or 0) == 0:
        return 0.0, float(2**bits - 1)
    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)


def _inverted(dataset: Dataset) -> bool:
    """Whether low values are shown bright: the Presentation LUT Shape decides when given,
    else MONOCHROME1. (pydicom's `apply_presentation_lut` inverts around the frame's own
    maximum, which would shift every grey level of a frame that does not reach full white.)"""
    shape = str(dataset.get("PresentationLUTShape") or "").strip().upper()
    if shape in ("IDENTITY", "INVERSE"):
        return shape == "INVERSE"
    return str(dataset.get("PhotometricInterpretation") or "").strip() == "MONOCHROME1"


def _to_8bit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    scaled = (np.asarray(values, dtype=np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey images (PNG can hold them) stretched to 0..255 by their own range."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return image
    pixels = np.asarray(image)
    return Image.fromarray(_to_8bit(pixels, float(pixels.min()), float(pixels.max())), "L")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()
