"""What an uploaded image may cost the gateway, and what of it is kept: checked before anything is stored.

- Size: at most MAX_IMAGE_PIXELS (a DICOM's Rows x Columns x frames, a JPEG's or PNG's width x height),
  read from the header before any pixel is decoded, so that every stored image can be previewed.
- Decoding: at most IMAGE_DECODE_SLOTS images are decoded at once (`Decoding.slots`).
- JPEG: only what draws the picture is kept, losslessly — the frame, scan, table and restart segments
  and the entropy-coded data, bit for bit, with JFIF's density and Adobe's colour transform; EXIF, XMP,
  ICC profiles, comments, every other APPn segment, JFIF thumbnails and anything after the end of the
  image are dropped. Re-encoding would change every pixel the model and the clinician see (a JPEG is
  lossy), and would cost a decode. An EXIF orientation other than upright is kept as a new EXIF
  segment holding that one tag, so the image is still shown upright.
- PNG: only the picture is kept, losslessly — its header, palette, transparency and image data chunks, bit
  for bit, each checked against its CRC; text (tEXt, iTXt, zTXt), EXIF, times, profiles, animation and
  unknown chunks are dropped, and so is anything hidden after the image's end. Nothing is decoded: that
  is left to the inference service, which refuses an image it cannot read before anything is stored.
- Polyglots: a JPEG or PNG whose dropped parts (segments, chunks, trailing bytes) hold a DICOM header
  ("DICM", a File Meta or a PatientName element) is refused (422 `polyglot_image`): it carries patient
  data the DICOM de-identification never saw.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from cxr_model.images import DICOM, JPEG, ImageError, check_header_size, media_type_of
from gateway.concurrency import Slots

# what marks a DICOM data set in bytes: the magic, a File Meta Transfer Syntax UID or a PatientName element
# (explicit VR little endian)
_DICOM_SIGNS = re.compile(rb"DICM|\x02\x00\x10\x00UI|\x10\x00\x10\x00PN")
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Decoding:
    """What decoding images may cost the gateway: pixels per image, and images decoded at once."""

    max_pixels: int
    slots: Slots

    @classmethod
    def of(cls, max_pixels: int, slots: int, wait_seconds: float) -> Decoding:
        busy = "too many images are being decoded at once; retry shortly"
        return cls(max_pixels, Slots(slots, wait_seconds, "decoding_busy", busy))


def admitted(data: bytes, decoding: Decoding) -> bytes:
    """The upload as it is stored and classified: within the pixel limit, JPEG and PNG without metadata.
    An ImageError (`image_too_large`, `polyglot_image`, `corrupt_image`, ...) for what is not admitted."""
    media_type = media_type_of(data)
    check_header_size(data, decoding.max_pixels)
    if media_type == DICOM:
        return data  # de-identified later, with the rest of its header (`dicom.deidentify`)
    if media_type == JPEG:
        return stripped_jpeg(data)
    return stripped_png(data)


def _refuse_polyglot(parts: list[bytes], container: str) -> None:
    if any(_DICOM_SIGNS.search(part) for part in parts):
        raise ImageError(
            "polyglot_image",
            f"the {container} also holds a DICOM header (patient data) in its metadata or after its end",
        )


# JPEG

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_APP0, _APP1, _APP14, _COM = 0xE0, 0xE1, 0xEE, 0xFE
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length
# frames (SOFn), Huffman and arithmetic tables, quantisation tables, number of lines, restart interval,
# hierarchical progression and reference expansion: what decoding needs
_PICTURE = {*range(0xC0, 0xC8), *range(0xC9, 0xD0), 0xDB, 0xDC, 0xDD, 0xDE, 0xDF}


@dataclass(frozen=True)
class _Segment:
    marker: int
    data: bytes  # the whole segment, marker and length included; a scan's entropy-coded data follows it


def stripped_jpeg(data: bytes) -> bytes:
    """The JPEG with only its picture's segments (see the module's doc); an ImageError if it cannot be parsed."""
    segments, trailing = _jpeg_segments(data)
    _refuse_polyglot([s.data for s in segments if s.marker not in _PICTURE | {_SOS}] + [trailing], "JPEG")
    kept = [_SOI_BYTES, *_jfif(segments), *_orientation_segment(data)]
    kept += [s.data for s in segments if s.marker in _PICTURE | {_SOS} or _is_adobe(s)]
    return b"".join(kept) + _EOI_BYTES


_SOI_BYTES, _EOI_BYTES = b"\xff\xd8", b"\xff\xd9"


def _jpeg_segments(data: bytes) -> tuple[list[_Segment], bytes]:
    """The segments between SOI and EOI (a scan with its entropy-coded data), and what follows EOI."""
    segments: list[_Segment] = []
    position = 2
    while True:
        marker, position = _next_marker(data, position)
        if marker == _EOI:
            return segments, data[position:]
        if marker in _STANDALONE:
            continue
        if marker == _SOI or position + 2 > len(data):
            raise ImageError("corrupt_image", "the JPEG's segments cannot be read")
        (length,) = struct.unpack_from(">H", data, position)
        end = position + length
        if length < 2 or end > len(data):
            raise ImageError("corrupt_image", "a JPEG segment runs past the end of the file")
        if marker == _SOS:
            end = _entropy_coded_end(data, end)
        segments.append(_Segment(marker, data[position - 2 : end]))
        position = end


def _next_marker(data: bytes, position: int) -> tuple[int, int]:
    """The marker at `position` (after any fill bytes) and the position after it."""
    if position >= len(data) or data[position] != 0xFF:
        raise ImageError("corrupt_image", "the JPEG ends before its end-of-image marker, or a segment is malformed")
    while position < len(data) and data[position] == 0xFF:
        position += 1
    if position >= len(data) or data[position] == 0x00:
        raise ImageError("corrupt_image", "the JPEG's segments cannot be read")
    return data[position], position + 1


def _entropy_coded_end(data: bytes, position: int) -> int:
    """Where a scan's entropy-coded data ends: at the first marker other than a stuffed 0xFF00 or a restart."""
    while (position := data.find(b"\xff", position)) != -1 and position + 1 < len(data):
        following = data[position + 1]
        if following != 0x00 and following != 0xFF and not 0xD0 <= following <= 0xD7:
            return position
        position += 1 if following == 0xFF else 2
    raise ImageError("corrupt_image", "the JPEG ends inside its image data")


def _jfif(segments: list[_Segment]) -> Iterator[bytes]:
    """The JFIF header with its density and no thumbnail, when the file has one."""
    for segment in segments:
        payload = segment.data[4:]
        if segment.marker == _APP0 and payload.startswith(b"JFIF\0") and len(payload) >= 14:
            yield _segment(_APP0, payload[:12] + b"\0\0")  # version, units, densities; a 0x0 thumbnail
            return


def _is_adobe(segment: _Segment) -> bool:
    return segment.marker == _APP14 and segment.data[4:9] == b"Adobe"


def _orientation_segment(data: bytes) -> Iterator[bytes]:
    """An EXIF segment holding only the orientation, when the image is not stored upright. An EXIF that
    cannot be read is refused: the image might be shown rotated."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            orientation = image.getexif().get(_EXIF_ORIENTATION)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            "corrupt_image", f"the JPEG's EXIF cannot be read (its orientation is unknown): {exc}"
        ) from exc
    if isinstance(orientation, int) and 2 <= orientation <= 8:
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION] = orientation
        yield _segment(_APP1, b"Exif\0\0" + exif.tobytes())


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


# PNG

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PICTURE = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
_PNG_KEPT = _PNG_PICTURE | {b"tRNS"}  # the picture and its transparency


@dataclass(frozen=True)
class _Chunk:
    kind: bytes
    payload: bytes
    whole: bytes  # length, type, payload and CRC, as sent


def stripped_png(data: bytes) -> bytes:
    """The PNG's picture and transparency chunks, bit for bit, without every other chunk and what follows IEND."""
    chunks, trailing = _png_chunks(data)
    _refuse_polyglot([chunk.payload for chunk in chunks if chunk.kind not in _PNG_PICTURE] + [trailing], "PNG")
    kept = [chunk for chunk in chunks if chunk.kind in _PNG_KEPT]
    if kept[0].kind != b"IHDR" or not any(chunk.kind == b"IDAT" for chunk in kept):
        raise ImageError("corrupt_image", "the PNG has no header or no image data")
    for chunk in kept:
        if zlib.crc32(chunk.whole[4:-4]) != struct.unpack(">I", chunk.whole[-4:])[0]:
            raise ImageError("corrupt_image", f"the PNG's {chunk.kind.decode(errors='replace')} chunk is damaged")
    return _PNG_SIGNATURE + b"".join(chunk.whole for chunk in kept)


_PNG_END = _Chunk(b"IEND", b"", struct.pack(">I4sI", 0, b"IEND", zlib.crc32(b"IEND")))


def _png_chunks(data: bytes) -> tuple[list[_Chunk], bytes]:
    """Every chunk up to IEND, and what follows it. A PNG whose last whole chunk is not IEND gets one (its
    pixels are all there); `corrupt_image` for one cut inside a chunk."""
    chunks, position = [], len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            break
        chunks.append(_Chunk(kind, data[position + 8 : end - 4], data[position:end]))
        if kind == b"IEND":
            return chunks, data[end:]
        position = end
    if position != len(data) or not chunks:
        raise ImageError("corrupt_image", "the PNG ends inside a chunk")
    return [*chunks, _PNG_END], b""
