"""`grader convert-weights`: write the course weights file from Keras' ImageNet VGG16.

Needs internet once (Keras downloads its VGG16 weights into ~/.keras); the result is
the course format, for RGB input (see vgg_weights.from_keras_vgg16).
"""
from __future__ import annotations

from . import vgg_weights
from ...errors import WeightsError


HELP = "write the course weights file from Keras' ImageNet VGG16 (needs internet)"


def add_arguments(parser) -> None:
    parser.add_argument("out", nargs="?", default="vgg16-conv-weights.npz")


def execute(args) -> None:
    main(args.out)


def main(out: str = "vgg16-conv-weights.npz") -> None:
    from ...modules import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    try:
        model = keras.applications.VGG16(weights="imagenet", include_top=False,
                                         input_shape=(224, 224, 3))
    except Exception as exc:  # download and HDF5 errors come in many types
        raise WeightsError(f"could not get Keras' ImageNet VGG16 weights ({type(exc).__name__}: "
                           f"{exc}). They are downloaded on first use: check the connection."
                           ) from None
    vgg_weights.save(vgg_weights.from_keras_vgg16(model), out)
    print(f"wrote {out}: conv1_1 .. conv5_3 for RGB input with the ImageNet mean subtracted")
