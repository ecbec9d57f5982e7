"""The display pipeline computed a stripe at a time gives the pixels of the whole-frame computation,
to the last bit, and a large frame no longer costs the process float64 copies of itself."""

import subprocess
import sys

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from cxr_model import images
from cxr_model.images import display_grey


def whole_frame_display(dataset: Dataset, frame: np.ndarray) -> np.ndarray:
    """The pipeline as it was, on the whole frame in float64: the oracle."""
    values = apply_modality_lut(frame, dataset)
    if images._has_voi(dataset):
        values = apply_voi_lut(values, dataset, index=0)
        low, high = images._voi_output_range(dataset)
    else:
        low, high = (float(v) for v in np.percentile(values, (0.5, 99.5)))
    grey = images._to_8bit(values, low, high)
    return 255 - grey if images._inverted(dataset) else grey


def grey_dataset(bits: int, signed: bool, **attributes) -> Dataset:
    dataset = Dataset()
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = bits, bits, bits - 1
    dataset.PixelRepresentation = int(signed)
    dataset.PhotometricInterpretation = "MONOCHROME2"
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset


CASES = {
    "uint16 percentiles": (16, False, {}),
    "int16 percentiles, rescaled": (16, True, {"RescaleSlope": "0.7", "RescaleIntercept": "-1024"}),
    "uint16 percentiles, negative slope": (16, False, {"RescaleSlope": "-1.3", "RescaleIntercept": "100"}),
    "uint8 percentiles, inverted": (8, False, {"PhotometricInterpretation": "MONOCHROME1"}),
    "int16 window": (
        16,
        True,
        {"RescaleSlope": "1", "RescaleIntercept": "-1024", "WindowCenter": "40", "WindowWidth": "400"},
    ),
    "uint16 sigmoid window": (16, False, {"WindowCenter": "2000", "WindowWidth": "3000", "VOILUTFunction": "SIGMOID"}),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_stripes_give_the_whole_frames_pixels(case, monkeypatch):
    bits, signed, attributes = CASES[case]
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    info = np.iinfo(dtype)
    rng = np.random.default_rng(len(case))
    frame = rng.integers(max(info.min, -3000), min(info.max, 4095), (301, 257), dtype=dtype, endpoint=True)
    frame[:3] = info.max  # a few extreme pixels the percentiles must step over
    dataset = grey_dataset(bits, signed, **attributes)
    monkeypatch.setattr(images, "_STRIPE_PIXELS", 1000)  # 3 rows a stripe: many stripes, a short last one

    np.testing.assert_array_equal(display_grey(dataset, frame), whole_frame_display(dataset, frame))


def test_a_big_endian_frame_counts_its_values_as_they_are():
    frame = np.arange(-500, 500, dtype=">i2").reshape(20, 50)
    dataset = grey_dataset(16, True)
    np.testing.assert_array_equal(display_grey(dataset, frame), whole_frame_display(dataset, frame))


PEAK_PROGRAM = """
import resource, sys
import numpy as np
from pydicom.dataset import Dataset
from cxr_model.images import display_grey
dataset = Dataset()
dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
dataset.PhotometricInterpretation = "MONOCHROME2"
dataset.RescaleSlope, dataset.RescaleIntercept = "1.5", "-10"
if sys.argv[1] == "window":
    dataset.WindowCenter, dataset.WindowWidth = "2000", "4000"
frame = np.random.default_rng(0).integers(0, 4096, (6000, 6000), dtype=np.uint16)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
display_grey(dataset, frame)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.parametrize("voi", ["window", "percentiles"])
def test_a_36_megapixel_frame_is_displayed_in_little_more_than_its_8_bit_output(voi):
    """Whole-frame float64 took 8 bytes a pixel two or three times over (~600-800 MiB for this frame);
    a stripe at a time it is the 36 MB of 8-bit output and a few MiB of stripes."""
    completed = subprocess.run([sys.executable, "-c", PEAK_PROGRAM, voi], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert int(completed.stdout) < 80, f"peak RSS grew {completed.stdout.strip()} MiB"
