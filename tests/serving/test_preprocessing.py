"""Preprocessing as the model card describes it (pure functions, real images)."""

import io

import numpy as np
import pytest
from PIL import Image

from inference.card import Preprocessing, ResizeSpec
from inference.preprocessing import ImageError, decode_image, preprocess, preprocess_array, preprocess_bytes

SPEC = Preprocessing(resize=ResizeSpec(width=28, height=28, method="bicubic"))


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_center_square_crop_keeps_the_middle():
    pixels = np.zeros((40, 100), dtype=np.uint8)
    pixels[:, 30:70] = 255  # a white centre band exactly as wide as the crop
    spec = Preprocessing(resize=ResizeSpec(width=40, height=40, method="nearest"))
    out = preprocess_array(pixels, spec)
    assert out.shape == (40, 40, 1) and out.dtype == np.float32
    assert out.min() == 255.0


def test_output_follows_size_channels_and_scaling():
    pixels = np.full((64, 64, 3), 200, dtype=np.uint8)
    spec = Preprocessing(resize=ResizeSpec(width=32, height=32), channels=3, scale=1 / 255, offset=-0.5)
    out = preprocess_array(pixels, spec)
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out, 200 / 255 - 0.5, atol=1e-6)


def test_rgb_and_grey_encodings_of_one_xray_agree(sample_xrays):
    grey = Image.open(sample_xrays["normal"][0]).convert("L")
    rgb = grey.convert("RGB")
    np.testing.assert_allclose(
        preprocess_bytes(encode(grey, "PNG"), SPEC), preprocess_bytes(encode(rgb, "PNG"), SPEC), atol=1.0
    )


def test_bicubic_resize_matches_pillow_directly(sample_xrays):
    data = sample_xrays["pneumonia"][0].read_bytes()
    image = Image.open(io.BytesIO(data)).convert("L")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    expected = np.asarray(
        image.crop((left, top, left + side, top + side)).resize((28, 28), Image.Resampling.BICUBIC), dtype=np.float32
    )
    np.testing.assert_array_equal(preprocess_bytes(data, SPEC)[:, :, 0], expected)


def test_sixteen_bit_grey_is_stretched_to_eight_bit():
    pixels = np.linspace(1000, 5000, 32 * 32).reshape(32, 32).astype(np.uint16)
    out = preprocess(Image.fromarray(pixels), Preprocessing(resize=ResizeSpec(width=32, height=32)))
    assert out.min() == 0.0 and out.max() == 255.0


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"GIF89a....", "unsupported_media_type"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage", "corrupt_image"),
    ],
)
def test_unreadable_bytes_raise_a_coded_error(data, code):
    with pytest.raises(ImageError) as error:
        decode_image(data)
    assert error.value.code == code


def test_too_many_pixels_are_refused_before_decoding():
    data = encode(Image.new("L", (300, 300)), "PNG")
    with pytest.raises(ImageError) as error:
        decode_image(data, max_pixels=300 * 299)
    assert error.value.code == "image_too_large"
