"""Which images and which VGG16 weights a course grades on, set once and read the same way
by `grader check`, `grader batch` (local and on Dask), the notebook's `check()`, the
Gradescope package and `grader calibrate`.

The rubric declares them (`data:` and `weights:`, see grader/rubric.py); a command line
may override either (`--data KIND [PATH]`, `--no-verify`, `--weights FILE`). Weights come
from, in order: `--weights`, the rubric's `weights.path`, $GRADER_WEIGHTS, the stand-in
weights. A rubric that declares `weights.sha256` refuses any other file, except one
given explicitly with `--weights`.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ...errors import KitError, RubricError, WeightsError
from ...options import DataOptions
from ...rubric import Rubric, check_keys
from . import vgg_weights

DATA_KINDS = ("synthetic", "cifar10")
# key: (type, required, description), as grader/rubric.py declares its own
DATA = {
    "kind": (str, True, f"one of {', '.join(DATA_KINDS)}"),
    "path": (str, False, "cifar10: the archive or extracted folder, relative to the rubric's "
                         "folder (default: downloaded into the cache)"),
    "md5": (str, False, "cifar10: the archive's expected MD5 (default: the official one)"),
}
WEIGHTS = {
    "path": (str, False, "the .npz file, relative to the rubric's folder"),
    "sha256": (str, False, "its SHA-256: any other weights file is refused"),
}


def _hex(value: str, length: int) -> bool:
    return len(value) == length and all(c in "0123456789abcdef" for c in value.lower())


def _section(value, source: str, name: str) -> dict:
    if value is not None and not isinstance(value, dict):
        raise RubricError(f"{source}: top level: {name!r} must be a mapping, found {value!r}.")
    return dict(value or {})


def parse_data(value, folder: Path, source: str) -> dict:
    """The rubric's `data:` (the images the course grades on, default the synthetic set):
    kind, and for cifar10 optionally path (made absolute against the rubric's folder) and
    md5."""
    setting = _section(value, source, "data") or {"kind": "synthetic"}
    check_keys(setting, DATA, "data", source)
    if setting["kind"] not in DATA_KINDS:
        raise RubricError(f"{source}: data: 'kind' must be one of {', '.join(DATA_KINDS)}, "
                          f"found {setting['kind']!r}.")
    if setting["kind"] == "synthetic" and set(setting) - {"kind"}:
        raise RubricError(f"{source}: data: the synthetic set takes no path or md5; remove "
                          f"{', '.join(sorted(set(setting) - {'kind'}))}.")
    if "md5" in setting and not _hex(setting["md5"], 32):
        raise RubricError(f"{source}: data: 'md5' must be 32 hexadecimal digits, found "
                          f"{setting['md5']!r}.")
    if "path" in setting:
        setting["path"] = str((folder / Path(setting["path"]).expanduser()).resolve())
    return setting


def parse_weights(value, folder: Path, source: str) -> dict:
    """The rubric's `weights:` (the VGG16 weights file the course grades with, default
    $GRADER_WEIGHTS, else stand-in weights): optionally path (absolute once parsed) and
    sha256."""
    weights = _section(value, source, "weights")
    check_keys(weights, WEIGHTS, "weights", source)
    if "sha256" in weights and not _hex(weights["sha256"], 64):
        raise RubricError(f"{source}: weights: 'sha256' must be 64 hexadecimal digits, found "
                          f"{weights['sha256']!r}.")
    if "path" in weights:
        weights["path"] = str((folder / Path(weights["path"]).expanduser()).resolve())
    return weights


def public_sections(public: dict) -> None:
    """Students' copy: the instructor's paths mean nothing elsewhere, and students download
    the official archive, which a rebuilt archive's MD5 would refuse."""
    from .cifar10 import MD5

    for section in ("data", "weights"):
        if isinstance(public.get(section), dict):
            public[section].pop("path", None)
    if isinstance(public.get("data"), dict) and public["data"].get("md5", "").lower() != MD5:
        public["data"].pop("md5", None)


@dataclass(frozen=True)
class Setting:
    kind: str = "synthetic"
    path: str | None = None
    """cifar10: archive or extracted folder; None: the cache (downloaded once)"""
    md5: str | None = None
    """cifar10: the archive's expected MD5; None: the official one"""
    verify: bool = True
    weights: str | None = None
    weights_sha256: str | None = None
    weights_overridden: bool = False
    """True when --weights chose the file: the rubric's sha256 then does not apply"""

    def describe_data(self) -> str:
        if self.kind == "synthetic":
            return "synthetic (grader/exercises/transfer_learning/synthetic.py)"
        return f"CIFAR-10 ({self.path or 'the cache'})"


def check_options(options: DataOptions) -> None:
    """Raises KitError in one line when `--data` names a kind this exercise does not have."""
    if options.kind is not None and (options.kind not in DATA_KINDS
                                     or (options.kind == "synthetic" and options.path)):
        raise KitError(f"--data: expected 'synthetic' or 'cifar10 [PATH]', found "
                       f"{options.kind}{' ' + options.path if options.path else ''}.")


def setting(rubric: Rubric, options: DataOptions = DataOptions()) -> Setting:
    """The rubric's data and weights with the command line's overrides applied."""
    check_options(options)
    kind, path, weights = options.kind, options.path, options.weights
    declared = rubric.sections["data"]
    if kind is None:
        kind, path, md5 = declared["kind"], declared.get("path"), declared.get("md5")
    else:
        md5 = declared.get("md5") if kind == declared["kind"] else None
        path = str(Path(path).expanduser().resolve()) if path else (
            declared.get("path") if kind == declared["kind"] else None)
    found = Setting(kind, path, md5, not options.no_verify, rubric.sections["weights"].get("path"),
                    rubric.sections["weights"].get("sha256"))
    if weights:
        found = replace(found, weights=str(weights), weights_overridden=True)
    return found


def sha256_of(weights: dict[str, np.ndarray]) -> str:
    """A digest of the weights' arrays (in key order), whatever file format held them."""
    return hashlib.sha256(b"".join(np.ascontiguousarray(weights[k]).tobytes()
                                   for k in sorted(weights))).hexdigest()


def load_weights(found: Setting) -> tuple[dict[str, np.ndarray], str]:
    """The convolution weights and a description, checked against the rubric's sha256 (of
    the arrays, `sha256_of`: the full vgg16_weights.npz holding the same convolutions
    passes too)."""
    path = found.weights
    if not found.weights_overridden:
        path = path or os.environ.get("GRADER_WEIGHTS")
    weights, description = vgg_weights.resolve(path) if path else vgg_weights.resolve(None)
    if found.weights_sha256 and not found.weights_overridden:
        digest = sha256_of(weights)
        if digest != found.weights_sha256.lower():
            raise WeightsError(
                f"{description}: the rubric grades with weights of SHA-256 "
                f"{found.weights_sha256[:16]}..., found {digest[:16]}... . Use the course's "
                "vgg16-conv-weights.npz: --weights FILE on the command line, weights=FILE in "
                "the notebook's check(), or $GRADER_WEIGHTS.")
    return weights, description


def load_dataset(found: Setting):
    """The cifar10.Dataset to grade on, or None for the synthetic set. An archive is checked
    against the rubric's MD5 (else the official one) unless `verify` is off; an extracted
    folder has no checksum to check."""
    if found.kind == "synthetic":
        return None
    from . import cifar10

    return cifar10.load(found.path or cifar10.download_path(), verify_checksum=found.verify,
                        md5=found.md5)


def resolve(rubric: Rubric, options: DataOptions = DataOptions()):
    """(weights, dataset or None, description of both) for grading with `rubric`."""
    found = setting(rubric, options)
    conv_weights, weights_description = load_weights(found)
    return conv_weights, load_dataset(found), f"{weights_description}; {found.describe_data()}"


WEIGHTS_NAME = "weights.npz"


def shipped(rubric: Rubric, options: DataOptions = DataOptions()) -> tuple[dict, dict]:
    """What a Gradescope package carries to grade as `rubric` does, here and now: ({name:
    bytes or a file to copy}, the rubric sections pointing at them, with their checksums).
    The archive must load (and match its checksum) before it ships."""
    import io

    from . import cifar10

    found = setting(rubric, options)
    conv_weights, _ = load_weights(found)
    buffer = io.BytesIO()
    np.savez(buffer, **conv_weights)
    files: dict = {WEIGHTS_NAME: buffer.getvalue()}
    sections = {"weights": {"path": WEIGHTS_NAME, "sha256": sha256_of(conv_weights)}}
    if found.kind == "cifar10":
        load_dataset(found)
        archive = Path(found.path) if found.path else cifar10.download_path()
        if not archive.is_file():
            raise KitError(f"{archive}: expected the CIFAR-10 archive ({cifar10.ARCHIVE_NAME}) to "
                           "ship in the package, found a folder. Pass the .tar.gz with --data.")
        files[cifar10.ARCHIVE_NAME] = archive
        sections["data"] = {"kind": "cifar10", "path": cifar10.ARCHIVE_NAME,
                            "md5": cifar10.md5sum(archive)}
    else:
        sections["data"] = {"kind": "synthetic"}
    return files, sections
