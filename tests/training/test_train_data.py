import numpy as np
import pytest

from cxr_model.preprocessing import preprocess_array
from trainer.data import (
    DataError,
    DataNotFoundError,
    Dataset,
    DataSource,
    Split,
    load_splits,
    preprocess_images,
    preprocessing_spec,
    read_npz,
    require_training_examples,
)
from trainer.fit import balanced_class_weights, batches, class_counts, subsample


def random_images(count: int, height: int = 28, width: int = 28, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, height, width), dtype=np.uint8)


def numbered_split(count: int) -> Split:
    """Image i is filled with the value i, so batches show which rows they hold."""
    images = np.broadcast_to(np.arange(count, dtype=np.float32)[:, None, None, None], (count, 28, 28, 1)).copy()
    return Split(images=images, label_ids=(np.arange(count) % 2).astype(np.int32))


def test_preprocessing_spec_is_the_raw_pixel_contract():
    spec = preprocessing_spec(28)
    assert (spec.color_mode, spec.crop, spec.channels, spec.layout, spec.dtype) == (
        "grayscale",
        "center_square",
        1,
        "NHWC",
        "float32",
    )
    assert (spec.resize.width, spec.resize.height, spec.resize.method) == (28, 28, "bicubic")
    assert (spec.scale, spec.offset) == (1.0, 0.0)


def test_28px_images_pass_through_unchanged_as_float():
    raw = random_images(5)
    images = preprocess_images(raw, preprocessing_spec(28))
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images[..., 0], raw.astype(np.float32))


def test_other_sizes_go_through_the_serving_preprocessing():
    raw = random_images(2, height=40, width=64)
    spec = preprocessing_spec(28)
    images = preprocess_images(raw, spec)
    assert images.shape == (2, 28, 28, 1)
    np.testing.assert_array_equal(images[1], preprocess_array(raw[1], spec))


def test_subsample_is_a_seeded_subset():
    split = numbered_split(50)
    first, again, other = subsample(split, 10, seed=1), subsample(split, 10, seed=1), subsample(split, 10, seed=2)
    rows = first.images[:, 0, 0, 0].astype(int)
    assert len(first) == 10 and len(set(rows)) == 10
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    np.testing.assert_array_equal(first.label_ids, rows % 2)  # labels stay with their images


def test_subsample_without_limit_keeps_the_split():
    split = numbered_split(8)
    assert subsample(split, None, seed=0) is split
    assert subsample(split, 100, seed=0) is split


def test_balanced_class_weights_equalise_the_classes():
    labels = np.array([0, 1, 1, 1, 1, 1, 2, 2])
    weights = balanced_class_weights(labels, 3)
    assert weights == pytest.approx({0: 8 / 3, 1: 8 / 15, 2: 4 / 3})
    counts = class_counts(labels, 3)
    assert counts[0] * weights[0] == pytest.approx(counts[1] * weights[1]) == pytest.approx(counts[2] * weights[2])


def test_balanced_class_weights_refuse_a_missing_class():
    with pytest.raises(ValueError, match=r"label ids \[0\]"):
        balanced_class_weights(np.array([1, 1, 1]), 2)


def test_a_class_without_training_examples_is_refused_by_name():
    present, absent = numbered_split(4), Split(np.zeros((2, 28, 28, 1), np.float32), np.zeros(2, np.int32))
    source = DataSource(dataset="image-folder")
    require_training_examples(Dataset(("a", "b"), {}, "a vs b", present, present, present, source))
    with pytest.raises(DataError, match="no training examples of class b"):
        require_training_examples(Dataset(("a", "b"), {}, "a vs b", absent, present, present, source))


def test_unshuffled_dataset_keeps_order_and_batches():
    batched = list(batches(numbered_split(10), batch_size=4))
    assert [len(labels) for _, labels in batched] == [4, 4, 2]
    rows = np.concatenate([images.numpy()[:, 0, 0, 0] for images, _ in batched])
    np.testing.assert_array_equal(rows, np.arange(10))
    assert batched[0][0].dtype.name == "float32" and batched[0][1].dtype.name == "int32"


def test_shuffled_dataset_is_seeded_and_reshuffles_each_epoch():
    def epoch_orders(seed: int) -> list[list[int]]:
        pipeline = batches(numbered_split(64), batch_size=16, shuffle_seed=seed)
        return [[int(row) for images, _ in pipeline for row in images.numpy()[:, 0, 0, 0]] for _epoch in range(2)]

    first_run, second_run = epoch_orders(7), epoch_orders(7)
    assert first_run == second_run
    assert sorted(first_run[0]) == list(range(64))
    assert first_run[0] != list(range(64))
    assert first_run[0] != first_run[1]


def test_missing_data_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(DataNotFoundError, match="CXR_DATA_DIR"):
        read_npz(tmp_path / "absent.npz")


def test_pneumoniamnist_splits_match_the_release(data_file):
    splits = load_splits(data_file, preprocessing_spec(28))
    expected = {"train": (1214, 3494), "val": (135, 389), "test": (234, 390)}
    for name, (normal, pneumonia) in expected.items():
        split = splits[name]
        assert split.images.shape == (normal + pneumonia, 28, 28, 1)
        assert split.images.dtype == np.float32
        assert split.images.min() >= 0.0 and split.images.max() <= 255.0
        assert class_counts(split.label_ids, 2) == {0: normal, 1: pneumonia}
