"""The embedded default dataset."""
import numpy as np

from grader.exercises.transfer_learning import synthetic


def test_deterministic_balanced_and_shaped_like_cifar10():
    images, labels = synthetic.generate(200, seed=5)
    again, _ = synthetic.generate(200, seed=5)
    other, _ = synthetic.generate(200, seed=6)
    assert images.dtype == np.uint8 and images.shape == (200, 32, 32, 3)
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [20] * 10
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)
    assert 60 < images.mean() < 200 and images.std() > 15


def test_load_gives_disjoint_train_and_test():
    data = synthetic.load(n_train=100, n_test=50)
    assert data.train_images.shape[0] == 100 and data.test_images.shape[0] == 50
    assert len(data.class_names) == 10
    assert not np.array_equal(data.train_images[:50], data.test_images)
