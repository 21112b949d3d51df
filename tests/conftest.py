"""Shared fixtures: the reference module, weights and small datasets, built once."""
from __future__ import annotations

import io
import os
import pickle
import tarfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from grader.exercises.transfer_learning import synthetic, vgg_weights
from grader.modules import load_module
from kit import DEFAULT_RUBRIC, SOLUTION

FILE_TIERS = {
    "test_corpus.py": ("corpus", "slow"),
    "test_corpus_variants.py": ("corpus", "slow"),
    "test_review_browser.py": ("browser", "slow"),
    "test_student_package.py": ("venv", "slow"),
    "test_cluster.py": ("cluster", "slow"),
    "test_manual_grading.py": ("browser", "slow"),  # one scenario: a batch, then a TA's grading
}
"""files whose every test belongs to a tier (pyproject.toml's markers)"""


LONGEST_FIRST = ["test_corpus_variants.py", "test_corpus.py", "test_notebook.py",
                 "test_attacks.py", "test_student_package.py", "test_batch.py"]
"""the files that take longest, started first when two run at a time (pyproject.toml's
addopts), so that neither process is left with a long file at the end"""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker in FILE_TIERS.get(item.path.name, ()):
            item.add_marker(marker)
    first = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: the rest as collected


@pytest.fixture(scope="session")
def shipped_inputs():
    """The grading inputs of the shipped rubric on the stand-in weights, built once."""
    from grader import rubric
    from grader.exercises.transfer_learning import inputs

    return inputs.build(rubric.load(DEFAULT_RUBRIC), vgg_weights.stand_in())


@pytest.fixture(scope="session")
def reference():
    return load_module(SOLUTION, "reference_transfer_learning")


@pytest.fixture(scope="session")
def weights():
    return vgg_weights.stand_in()


@pytest.fixture(scope="session")
def small_data():
    """A small synthetic set: (train images, labels), (test images, labels)."""
    return synthetic.generate(640, seed=11), synthetic.generate(256, seed=12)


def cifar_batch_pickle(images: np.ndarray, labels, label: str = "batch") -> bytes:
    """A batch pickled like the official files: bytes keys, data in channel-major rows."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return pickle.dumps({b"batch_label": label.encode(), b"labels": list(map(int, labels)),
                         b"data": data, b"filenames": [b"x.png"] * len(images)}, protocol=2)


def make_cifar_members(per_batch: int = 4, seed: int = 0) -> tuple[dict[str, bytes], dict]:
    """Member files of a tiny archive in the official layout, and the arrays they hold."""
    rng = np.random.default_rng(seed)
    members, arrays = {}, {"train_images": [], "train_labels": []}
    for i in range(1, 6):
        images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        members[f"data_batch_{i}"] = cifar_batch_pickle(images, labels)
        arrays["train_images"].append(images)
        arrays["train_labels"].append(labels)
    arrays = {k: np.concatenate(v) for k, v in arrays.items()}
    arrays["test_images"] = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
    arrays["test_labels"] = rng.integers(0, 10, per_batch)
    members["test_batch"] = cifar_batch_pickle(arrays["test_images"], arrays["test_labels"])
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
             b"dog", b"frog", b"horse", b"ship", b"truck"]
    members["batches.meta"] = pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2)
    return members, arrays


def write_cifar_archive(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


@pytest.fixture
def cifar_archive(tmp_path):
    """(path of a tiny official-layout archive, the arrays in it)."""
    members, arrays = make_cifar_members()
    path = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_archive(path, members)
    return path, arrays
