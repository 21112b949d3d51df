"""The CIFAR-10 loader on small archives in the official layout made here."""
from __future__ import annotations

import functools
import http.server
import shutil
import tarfile
import threading

import numpy as np
import pytest

from grader.exercises.transfer_learning import cifar10
from grader.errors import DataError

from conftest import make_cifar_members, write_cifar_archive


def test_archive_loads_pixels_in_nhwc_rgb_order(cifar_archive):
    """Are the channel-major rows turned into the same NHWC images that were written?"""
    path, arrays = cifar_archive
    data = cifar10.load(path, verify_checksum=False)
    assert data.train_images.dtype == np.uint8 and data.train_images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(data.train_images, arrays["train_images"])
    np.testing.assert_array_equal(data.train_labels, arrays["train_labels"])
    np.testing.assert_array_equal(data.test_images, arrays["test_images"])
    assert data.class_names[0] == "airplane" and len(data.class_names) == 10


def test_extracted_folder_loads_the_same(cifar_archive, tmp_path):
    """Does an extracted folder (or the folder holding it) give the same arrays?"""
    path, arrays = cifar_archive
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    for folder in (tmp_path / "x", tmp_path / "x" / "cifar-10-batches-py"):
        data = cifar10.load(folder)
        np.testing.assert_array_equal(data.test_images, arrays["test_images"])


def test_wrong_checksum_is_refused_unless_opted_out(cifar_archive):
    """Is an archive whose MD5 is not the official one refused, and accepted with the opt-out?"""
    path, _ = cifar_archive
    with pytest.raises(DataError, match="MD5 .* does not match .*--no-verify"):
        cifar10.load(path)
    cifar10.load(path, verify_checksum=False)


def test_truncated_archive_is_reported(cifar_archive, tmp_path):
    """Is a truncated download reported as corrupt, with what to do?"""
    path, _ = cifar_archive
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        cifar10.load(cut, verify_checksum=False)


def test_not_an_archive_is_reported(tmp_path):
    bogus = tmp_path / "cifar.tar.gz"
    bogus.write_text("hello")
    with pytest.raises(DataError, match="expected a gzip-compressed tar"):
        cifar10.load(bogus, verify_checksum=False)


def test_missing_member_is_named(tmp_path):
    members, _ = make_cifar_members()
    del members["data_batch_3"]
    path = tmp_path / "a.tar.gz"
    write_cifar_archive(path, members)
    with pytest.raises(DataError, match="data_batch_3"):
        cifar10.load(path, verify_checksum=False)


def test_corrupt_pickle_is_reported(tmp_path):
    members, _ = make_cifar_members()
    members["test_batch"] = b"\x80\x02garbage"
    path = tmp_path / "a.tar.gz"
    write_cifar_archive(path, members)
    with pytest.raises(DataError, match="test_batch: expected a CIFAR-10 batch pickle"):
        cifar10.load(path, verify_checksum=False)


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        cifar10.load(tmp_path / "nope.tar.gz")


def test_wrong_image_arrays_are_refused():
    """Are images of the wrong dtype or shape refused with what was expected?"""
    with pytest.raises(DataError, match=r"expected images uint8 \[N, 32, 32, 3\], found float32"):
        cifar10.check_arrays(np.zeros((2, 32, 32, 3), np.float32), np.zeros(2, int), "x")
    with pytest.raises(DataError, match=r"found uint8 \[2, 3, 32, 32\]"):
        cifar10.check_arrays(np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2, int), "x")
    with pytest.raises(DataError, match="labels in 0..9"):
        cifar10.check_arrays(np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 10]), "x")


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_checks_md5_and_caches(cifar_archive, http_server, tmp_path, monkeypatch):
    """Does a download land in the cache only when its checksum matches?"""
    path, arrays = cifar_archive
    root, base = http_server
    shutil.copy(path, root / cifar10.ARCHIVE_NAME)
    monkeypatch.setattr(cifar10, "URL", f"{base}/{cifar10.ARCHIVE_NAME}")
    cache = tmp_path / "cache"

    monkeypatch.setattr(cifar10, "MD5", "0" * 32)
    with pytest.raises(DataError, match="download of"):
        cifar10.load(cache=cache)
    assert not (cache / cifar10.ARCHIVE_NAME).exists()
    assert not [p for p in cache.rglob("*") if p.is_file()], "a failed download left a file"

    monkeypatch.setattr(cifar10, "MD5", cifar10.md5sum(path))
    data = cifar10.load(cache=cache)
    np.testing.assert_array_equal(data.test_labels, arrays["test_labels"])
    assert (cache / cifar10.ARCHIVE_NAME).is_file()
    (root / cifar10.ARCHIVE_NAME).unlink()  # a second load must use the cache, not the server
    cifar10.load(cache=cache)


def test_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="could not download CIFAR-10"):
        cifar10.load(cache=tmp_path)
