"""CIFAR-10 from the official "python version" archive: a local archive, an extracted
folder, or a checksummed download into the cache.

The archive holds `cifar-10-batches-py/` with five training batches, one test batch
and `batches.meta`, each a pickle written by Python 2 (hence `encoding="bytes"`): a dict
whose b"data" is uint8 [10000, 3072] in channel-major rows (R plane, G plane, B plane)
and b"labels" a list of ints.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import DataError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]
SIZES = {"train": 50000, "test": 10000}


@dataclass
class Dataset:
    """Images uint8 [N, 32, 32, 3] RGB and labels int64 [N] for two splits."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    name: str = "cifar10"

    def __post_init__(self):
        for split in ("train", "test"):
            check_arrays(getattr(self, f"{split}_images"), getattr(self, f"{split}_labels"),
                         f"{self.name} {split} split", len(self.class_names))

    def split_validation(self, n_val: int) -> tuple[tuple[np.ndarray, np.ndarray],
                                                     tuple[np.ndarray, np.ndarray]]:
        """((train images, labels), (validation images, labels)): the last `n_val`
        training examples are held out for validation."""
        cut = len(self.train_labels) - n_val
        return ((self.train_images[:cut], self.train_labels[:cut]),
                (self.train_images[cut:], self.train_labels[cut:]))


def check_arrays(images, labels, what: str, num_classes: int = 10) -> None:
    """Refuse arrays the exercise cannot use: images must be uint8 [N, 32, 32, 3] and
    labels integers [N] in 0..num_classes-1."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"{what}: expected images uint8 [N, 32, 32, 3], found {images.dtype} "
                        f"{list(images.shape)}. Convert with np.asarray(x, np.uint8) in NHWC order.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(images),):
        raise DataError(f"{what}: expected integer labels [{len(images)}], found {labels.dtype} "
                        f"{list(labels.shape)}.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{what}: expected labels in 0..{num_classes - 1}, found "
                        f"{labels.min()}..{labels.max()}.")


def md5sum(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the archive ({exc.strerror}). Check the path and "
                        "its permissions.") from None
    return digest.hexdigest()


def _parse_batch(payload: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = pickle.loads(payload, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError,
            AttributeError, IndexError) as exc:
        raise DataError(f"{name}: expected a CIFAR-10 batch pickle with b'data' and b'labels', "
                        f"could not read it ({type(exc).__name__}: {exc}). "
                        "The file is damaged: download the archive again.") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{name}: expected data [N, 3072] with N labels, found data "
                        f"{list(data.shape)} and {len(labels)} labels. Download the archive again.")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{name}: labels must be 0..9, found {labels.min()}..{labels.max()}.")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _assemble(read, source: str) -> Dataset:
    """Build the dataset from `read(member name) -> bytes`."""
    train = [_parse_batch(read(name), f"{source}:{name}") for name in TRAIN_BATCHES]
    test_images, test_labels = _parse_batch(read(TEST_BATCH), f"{source}:{TEST_BATCH}")
    try:
        meta = pickle.loads(read(META), encoding="bytes")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{source}:{META}: expected a pickle with b'label_names', could not read "
                        f"it ({type(exc).__name__}). Download the archive again.") from None
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return Dataset(train_images, train_labels, test_images, test_labels, names, name="cifar10")


def load_archive(path: str | os.PathLike, *, verify_checksum: bool = True,
                 md5: str | None = None) -> Dataset:
    """Read the official `cifar-10-python.tar.gz` without extracting it to disk, checking
    its MD5 against `md5` (a course's own archive, as its rubric declares) or the official one."""
    path = Path(path)
    if verify_checksum:
        found = md5sum(path)
        if md5 and found != md5.lower():
            raise DataError(f"{path}: MD5 {found} does not match {md5}, the archive the rubric "
                            "declares. Use the course's archive, or pass --no-verify if this one "
                            "is trusted.")
        if not md5 and found != MD5:
            raise DataError(
                f"{path}: MD5 {found} does not match the official CIFAR-10 archive ({MD5}). "
                "Download it again, or pass --no-verify if this is a trusted rebuilt archive.")
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}

            def read(name: str) -> bytes:
                member = members.get(f"{FOLDER}/{name}")
                if member is None:
                    raise DataError(f"{path}: expected {FOLDER}/{name} in the archive, it is not "
                                    "there. Is this the CIFAR-10 python version?")
                return tar.extractfile(member).read()

            return _assemble(read, str(path))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: expected a gzip-compressed tar archive (cifar-10-python.tar.gz), "
                        f"could not read it ({type(exc).__name__}: {exc}). The file is truncated or "
                        "corrupt: delete it and download it again.") from None


def load_folder(path: str | os.PathLike) -> Dataset:
    """Read an extracted archive: `path` is cifar-10-batches-py or the folder holding it."""
    path = Path(path)
    if (path / FOLDER).is_dir():
        path = path / FOLDER

    def read(name: str) -> bytes:
        try:
            return (path / name).read_bytes()
        except OSError:
            raise DataError(f"{path}: expected the file {name} of the extracted CIFAR-10 "
                            "archive, it is missing. Extract the archive again.") from None

    return _assemble(read, str(path))


def download(cache: str | os.PathLike) -> Path:
    """Fetch the official archive into `cache` (once), checking its MD5.

    pooch downloads to a temporary file and moves it into place only after the checksum
    matched, so an interrupted or damaged download never leaves a file a later run trusts.
    """
    import pooch

    try:
        return Path(pooch.retrieve(URL, known_hash=f"md5:{MD5}", fname=ARCHIVE_NAME,
                                   path=cache, progressbar=True))
    except ValueError as exc:  # pooch's checksum mismatch
        raise DataError(f"download of {URL}: {exc}. Try again later.") from None
    except Exception as exc:  # network errors come from requests, several types
        raise DataError(f"could not download CIFAR-10 from {URL} ({type(exc).__name__}). "
                        f"Check the connection, or download {ARCHIVE_NAME} yourself and pass "
                        "its path.") from None


def download_path(cache: str | os.PathLike | None = None) -> Path:
    """The archive in the cache, downloaded first if it is not there yet."""
    from ...paths import cache_dir

    cached = Path(cache or cache_dir()) / ARCHIVE_NAME
    return cached if cached.is_file() else download(cache or cache_dir())


def load(path: str | os.PathLike | None = None, *, cache: str | os.PathLike | None = None,
         verify_checksum: bool = True, md5: str | None = None) -> Dataset:
    """CIFAR-10 from `path` (archive or extracted folder), or downloaded into `cache`; an
    archive's MD5 is checked against `md5`, else the official one (see load_archive)."""
    if path is None:
        path = download_path(cache)
    path = Path(path)
    if path.is_dir():
        return load_folder(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. Expected {ARCHIVE_NAME} or its "
                        "extracted cifar-10-batches-py folder; omit the path to download it.")
    return load_archive(path, verify_checksum=verify_checksum, md5=md5)


HELDOUT_SHIFT = 3
"""held-out images move by up to this many pixels each way (edges reflected)"""
HELDOUT_NOISE = 4.0
"""and get Gaussian noise of this standard deviation (in 0..255 pixel units)"""


def heldout_split(dataset: Dataset, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` test images drawn with the private `seed`, each disguised so that the public
    test set does not give its label away by lookup: mirrored at random, moved by up to
    HELDOUT_SHIFT pixels (edges reflected), brightness and contrast changed by a few
    percent, and HELDOUT_NOISE of Gaussian noise. These are the changes CIFAR-10 models
    are trained to ignore, so the images keep their class; no image is byte-equal to its
    public original, and which originals were drawn depends on the seed."""
    rng = np.random.default_rng([seed, 0xC1FA])
    chosen = np.sort(rng.choice(len(dataset.test_labels), min(n, len(dataset.test_labels)),
                                replace=False))
    images = dataset.test_images[chosen].astype(np.float32)
    flip = rng.random(len(images)) < 0.5
    images[flip] = images[flip, :, ::-1]
    pad = HELDOUT_SHIFT
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    shifts = rng.integers(0, 2 * pad + 1, (len(images), 2))
    size = images.shape[1]
    images = np.stack([padded[i, dy:dy + size, dx:dx + size] for i, (dy, dx) in enumerate(shifts)])
    contrast = rng.uniform(0.9, 1.1, (len(images), 1, 1, 1)).astype(np.float32)
    brightness = rng.uniform(-8, 8, (len(images), 1, 1, 1)).astype(np.float32)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    images = (images - mean) * contrast + mean + brightness
    images += rng.normal(0, HELDOUT_NOISE, images.shape).astype(np.float32)
    return (np.clip(np.rint(images), 0, 255).astype(np.uint8),
            dataset.test_labels[chosen].astype(np.int64))
