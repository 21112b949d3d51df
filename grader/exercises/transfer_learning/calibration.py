"""What `grader calibrate` grades this exercise's corpus on (Exercise.calibration): the
course's images and weights, loaded once, and the rubric sections that name them."""
from __future__ import annotations

from pathlib import Path

from ...exercise import Measured
from ...options import DataOptions
from . import data as data_mod, inputs as inputs_mod


def _beside(path: Path, rubric_path: Path) -> str:
    """`path` as the rubric should name it: relative to the rubric's folder when inside it
    (the course folder can move), else absolute."""
    path, folder = path.resolve(), rubric_path.resolve().parent
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def declared_data(found: data_mod.Setting, rubric_path: Path) -> dict:
    """The rubric's `data` section for what calibration measured on: the archive with its
    MD5 (the cached one when no path was given)."""
    if found.kind == "synthetic":
        return {"kind": "synthetic"}
    from . import cifar10

    declared = {"kind": found.kind}
    archive = Path(found.path) if found.path else cifar10.download_path()
    if found.path:
        declared["path"] = _beside(archive, rubric_path)
    if archive.is_file():
        declared["md5"] = cifar10.md5sum(archive)
    return declared


def measured(rubric, options: DataOptions = DataOptions()) -> Measured:
    found = data_mod.setting(rubric, options)
    conv_weights, weights_source = data_mod.load_weights(found)
    dataset, data_description = data_mod.load_dataset(found), found.describe_data()
    digest = data_mod.sha256_of(conv_weights)

    def sections(rubric_path: Path) -> dict:
        named = {}
        if options.kind:
            named["data"] = declared_data(found, rubric_path)
        if options.weights:
            named["weights"] = {"path": _beside(Path(options.weights), rubric_path), "sha256": digest}
        return named

    return Measured(inputs=lambda seeded: inputs_mod.build(seeded, conv_weights, dataset),
                    description=f"{weights_source}; {data_description}",
                    provenance={"data": data_description, "weights": weights_source,
                                "weights_sha256": digest},
                    sections=sections)
