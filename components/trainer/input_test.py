import numpy as np
import pytest
import tensorflow as tf

from components.trainer.conftest import encoded_image, random_pixels, serialized_example, write_shards
from components.trainer.input import DECODED_IMAGE_BYTES, count_examples, fits_in_memory, make_dataset
from components.trainer.preprocessing import preprocess_image
from data_schema import CHANNELS, IMAGE_SIZE


def _all(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([pixels for pixels, _ in batches]), np.concatenate([labels for _, labels in batches])


def test_eval_batches_hold_every_example_preprocessed_in_shard_order(tmp_path):
    images = [encoded_image(random_pixels(IMAGE_SIZE, IMAGE_SIZE, seed)) for seed in range(5)]
    pattern = write_shards(tmp_path / "eval", [serialized_example(image, seed % 3) for seed, image in
                                               enumerate(images)], shards=1)

    pixels, labels = _all(make_dataset([pattern], batch_size=2, training=False, seed=0, cache_images=False,
                                       repeat=False))

    assert pixels.shape == (5, IMAGE_SIZE, IMAGE_SIZE, CHANNELS) and pixels.dtype == np.float32
    assert labels.tolist() == [0, 1, 2, 0, 1]
    for image, preprocessed in zip(images, pixels):
        np.testing.assert_array_equal(preprocessed, preprocess_image(tf.constant(image)).numpy())


@pytest.mark.parametrize("cache_images", [False, True])
def test_training_reshuffles_every_epoch_the_same_way_for_the_same_seed(example_splits, cache_images):
    def two_epochs(seed):
        dataset = make_dataset([example_splits["train"]], batch_size=4, training=True, seed=seed,
                               cache_images=cache_images, repeat=False)
        return [_all(dataset)[1].tolist() for _ in range(2)]

    first, second = two_epochs(seed=7)

    assert sorted(first) == sorted(second) == sorted([0, 1, 2] * 8)
    assert first != second
    assert two_epochs(seed=7) == [first, second]


def test_repeat_gives_full_batches_without_end(example_splits):
    dataset = make_dataset([example_splits["eval"]], batch_size=5, training=False, seed=0, cache_images=True,
                           repeat=True)

    assert [len(labels) for _, labels in dataset.take(10).as_numpy_iterator()] == [5] * 10  # 50 of 12 images


def test_count_examples_counts_every_shard(example_splits):
    assert count_examples([example_splits["train"], example_splits["eval"]]) == 24 + 12


def test_a_pattern_matching_no_shard_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="Split-train"):
        make_dataset([str(tmp_path / "Split-train" / "*")], batch_size=4, training=True, seed=0, cache_images=False,
                     repeat=False)


def test_the_memory_budget_decides_between_caching_and_streaming():
    ten_thousand_images_mb = 10_000 * DECODED_IMAGE_BYTES / 2**20

    assert fits_in_memory(10_000, budget_mb=int(ten_thousand_images_mb) + 1)
    assert not fits_in_memory(10_000, budget_mb=int(ten_thousand_images_mb) - 1)
    assert not fits_in_memory(1, budget_mb=0)  # 0: always stream


def test_streamed_and_cached_training_see_the_same_images_each_epoch(example_splits):
    def one_epoch(cache_images):
        dataset = make_dataset([example_splits["train"]], batch_size=4, training=True, seed=3,
                               cache_images=cache_images, repeat=False)
        pixels, labels = _all(dataset)
        return sorted(zip(labels.tolist(), pixels.sum(axis=(1, 2, 3)).round(3).tolist()))

    assert one_epoch(cache_images=False) == one_epoch(cache_images=True)
