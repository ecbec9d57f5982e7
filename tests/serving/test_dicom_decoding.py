"""DICOM as hospitals send it: every transfer syntax the service accepts decodes to the same
pixels as its uncompressed twin; what cannot be decoded gets a specific code; a deflated
file cannot inflate beyond its cap.

Files: pydicom's bundled test files and the pydicom-data package (real DICOM from scanners
and archives, MIT licensed).
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pydicom.encaps
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from cxr_model.images import ImageError, decode_image, inflation_limit

BUNDLED = Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_data() -> Path:
    import data_store  # the pydicom-data package

    return Path(data_store.__file__).parent / "data"


def read(name: str) -> bytes:
    for folder in (BUNDLED, pydicom_data()):
        if (folder / name).exists():
            return (folder / name).read_bytes()
    raise FileNotFoundError(name)


def pixels(name: str) -> np.ndarray:
    return np.asarray(decode_image(read(name)))


def transfer_syntax(name: str) -> str:
    return pydicom.dcmread(io.BytesIO(read(name)), stop_before_pixels=True).file_meta.TransferSyntaxUID.name


# (encoded file, its uncompressed twin): lossless encodings must give the very same display pixels
LOSSLESS_TWINS = [
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),  # CR chest, MONOCHROME1, 15 bits, JPEG 2000 lossless
    ("RG3_J2KR.dcm", "RG3_UNCR.dcm"),  # CR extremity, 10 bits
    ("MR_small_RLE.dcm", "MR_small.dcm"),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
    ("MR_small_bigendian.dcm", "MR_small.dcm"),
    ("MR_small_implicit.dcm", "MR_small.dcm"),
    ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),
    ("emri_small_RLE.dcm", "emri_small.dcm"),
    ("emri_small_big_endian.dcm", "emri_small.dcm"),
    ("693_J2KR.dcm", "693_UNCR.dcm"),  # CT, 16 bits
    ("SC_rgb_rle.dcm", "SC_rgb.dcm"),  # RGB
    ("SC_rgb_rle_16bit.dcm", "SC_rgb_16bit.dcm"),
    ("OBXXXX1A_rle.dcm", "OBXXXX1A.dcm"),  # palette colour ultrasound
    ("liver_expb_1frame.dcm", "liver_1frame.dcm"),
]


@pytest.mark.parametrize(("encoded", "plain"), LOSSLESS_TWINS, ids=[pair[0] for pair in LOSSLESS_TWINS])
def test_a_lossless_encoding_decodes_to_the_pixels_of_its_uncompressed_twin(encoded, plain):
    assert transfer_syntax(encoded) != transfer_syntax(plain)
    np.testing.assert_array_equal(pixels(encoded), pixels(plain))


def test_a_palette_written_as_8_bit_entries_in_16_bit_words_shows_the_same_colours():
    """The big-endian copy stores the same palette as 8-bit values in 16-bit words (PS3.3 C.7.6.3.1.5)."""
    np.testing.assert_allclose(pixels("OBXXXX1A_expb.dcm"), pixels("OBXXXX1A.dcm"), atol=1)


def test_jpeg_lossless_process_14_decodes():
    """The most common transfer syntax in X-ray archives; it needs a decoder pydicom lacks on its own."""
    for name in ("JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEG-LL.dcm"):
        assert transfer_syntax(name).startswith("JPEG Lossless, Non-Hierarchical, First-Order Prediction")
        dataset = pydicom.dcmread(io.BytesIO(read(name)))
        image = pixels(name)
        assert image.shape == (dataset.Rows, dataset.Columns) and image.dtype == np.uint8
        assert image.std() > 10  # a picture, not a blank


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("RG1_J2KI.dcm", "L"),  # JPEG 2000 lossy
        ("JPGExtended.dcm", "L"),  # JPEG extended, 12 bits
        ("JPEGLSNearLossless_16.dcm", "L"),
        ("color3d_jpeg_baseline.dcm", "RGB"),  # YBR_FULL_422 JPEG baseline
        ("SC_rgb_jpeg_dcmtk.dcm", "RGB"),
        ("US1_J2KI.dcm", "RGB"),  # YBR_ICT
        ("SC_ybr_full_422_uncompressed.dcm", "RGB"),
        ("image_dfl.dcm", "L"),  # deflated
        ("SC_rgb_rle_2frame.dcm", "RGB"),  # multi-frame: the first frame
    ],
)
def test_lossy_colour_deflated_and_multi_frame_files_decode(name, mode):
    image = decode_image(read(name))
    dataset = pydicom.dcmread(io.BytesIO(read(name)), stop_before_pixels=True)
    assert image.mode == mode and image.size == (dataset.Columns, dataset.Rows)


def test_a_lossy_encoding_stays_close_to_the_original():
    lossy, original = pixels("RG1_J2KI.dcm").astype(int), pixels("RG1_UNCR.dcm").astype(int)
    assert np.abs(lossy - original).mean() < 3


def test_multi_frame_shows_the_first_frame():
    two_frames = pydicom.dcmread(io.BytesIO(read("SC_rgb_rle_2frame.dcm")))
    np.testing.assert_array_equal(pixels("SC_rgb_rle_2frame.dcm"), two_frames.pixel_array[0])


def test_a_transfer_syntax_without_a_decoder_is_named_in_the_refusal():
    dataset = pydicom.dcmread(io.BytesIO(read("MR_small.dcm")))
    dataset.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video: no decoder
    dataset.PixelData = pydicom.encaps.encapsulate([dataset.PixelData])
    dataset["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=False)
    with pytest.raises(ImageError) as refused:
        decode_image(buffer.getvalue())
    assert refused.value.code == "unsupported_transfer_syntax"
    assert "MPEG2" in refused.value.message and "1.2.840.10008.1.2.4.100" in refused.value.message


def deflated_dicom(pixel_bytes: int) -> bytes:
    """A 'Deflated Explicit VR Little Endian' file whose pixel data is `pixel_bytes` of zeros,
    deflated as a stream (it is never held inflated here)."""
    header = pydicom.Dataset()
    header.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    header.SOPInstanceUID = pydicom.uid.generate_uid()
    header.Modality, header.SamplesPerPixel, header.PhotometricInterpretation = "OT", 1, "MONOCHROME2"
    header.Rows, header.Columns = pixel_bytes // (2 * 16384), 16384
    header.BitsAllocated, header.BitsStored, header.HighBit, header.PixelRepresentation = 16, 16, 15, 0
    encoded = io.BytesIO()
    header.file_meta = pydicom.dataset.FileMetaDataset()
    header.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header.save_as(encoded, enforce_file_format=True)
    attributes = encoded.getvalue()[_meta_end(encoded.getvalue()) :]
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = [deflater.compress(attributes + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes))]
    chunk = bytes(1 << 20)
    for _ in range(pixel_bytes >> 20):
        stream.append(deflater.compress(chunk))
    stream.append(deflater.flush())
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = header.SOPClassUID, header.SOPInstanceUID
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta_only = pydicom.filebase.DicomBytesIO()
    pydicom.filewriter.write_file_meta_info(meta_only, meta)
    return b"\0" * 128 + b"DICM" + meta_only.getvalue() + b"".join(stream)


def _meta_end(data: bytes) -> int:
    from cxr_model.images import _file_meta

    return _file_meta(data)[1]


def test_a_small_deflated_file_decodes():
    image = decode_image(deflated_dicom(4 << 20))
    assert image.size == (16384, 128)


def test_a_deflate_bomb_is_refused_before_it_inflates_beyond_the_cap():
    bomb = deflated_dicom(1 << 30)  # 1 GiB of pixel data in about 1 MiB
    assert len(bomb) < 2 << 20
    with pytest.raises(ImageError) as refused:
        decode_image(bomb, max_pixels=1_000_000)
    assert refused.value.code == "image_too_large"
    assert str(inflation_limit(1_000_000)) in refused.value.message


def test_the_bomb_costs_the_process_no_more_memory_than_the_cap(tmp_path):
    """Measured in a fresh process: its peak RSS while refusing a 1 GiB bomb stays near the cap."""
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(deflated_dicom(1 << 30))
    script = f"""
import resource
from cxr_model.images import ImageError, decode_image
data = open({str(bomb)!r}, "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_image(data, max_pixels=1_000_000)
except ImageError as error:
    print(error.code, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    code, grown_mib = completed.stdout.split()
    assert code == "image_too_large", completed.stderr
    assert int(grown_mib) < inflation_limit(1_000_000) / 2**20 + 20, f"peak RSS grew {grown_mib} MiB"
