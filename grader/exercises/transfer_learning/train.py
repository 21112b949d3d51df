"""`grader train`: train an exercise module (the reference by default) end to end.

Loads the data and weights, builds the model, trains with checkpoints and TensorBoard
logs, and reports the test accuracy. Run the same command again after an interrupt and
it resumes from the newest checkpoint.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import cifar10, synthetic, vgg_weights
from ...errors import KitError
from ...options import DataOptions

DEFAULT_STEPS = 300
"""the global step `grader train` trains up to when not told"""


@dataclass
class TrainResult:
    start_step: int
    final_step: int
    test_accuracy: float


def load_data(kind: str = "synthetic", path: str | None = None, *,
              verify_checksum: bool = True) -> cifar10.Dataset:
    """The dataset named on the command line: "synthetic" or "cifar10" [PATH]."""
    if kind == "synthetic":
        if path:
            raise KitError(f"--data synthetic takes no path, found {path!r}.")
        return synthetic.load()
    if kind == "cifar10":
        return cifar10.load(path, verify_checksum=verify_checksum)
    raise KitError(f"--data: expected 'synthetic' or 'cifar10 [PATH]', found {kind!r}.")


def ensure_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Create `path` if needed and prove it is writable, before any training starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise KitError(f"{what} {path}: expected a writable folder, {exc.strerror.lower()}. "
                       f"Choose another folder with the matching option.") from None
    return path


HELP = "train the reference (or a module) end to end; run again to resume"


def add_arguments(parser) -> None:
    parser.add_argument("--data", nargs="+", default=["synthetic"], metavar="KIND [PATH]",
                        help="'synthetic' (default, offline) or 'cifar10 [PATH]' (archive or "
                             "extracted folder; downloaded into the cache when PATH is left out)")
    parser.add_argument("--weights", help="vgg16-conv-weights.npz (default: $GRADER_WEIGHTS, "
                        "else stand-in weights)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help="global step to train up to (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, help="default: the module's own")
    parser.add_argument("--checkpoint-dir", default="runs/reference/checkpoints")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--log-dir", default="runs/reference/logs")
    parser.add_argument("--no-verify", action="store_true",
                        help="accept a CIFAR-10 archive whose MD5 is not the official one")
    parser.add_argument("--module", help="exercise module to train (default: the reference "
                        "solution of the course folder)")


def execute(args) -> None:
    options = DataOptions.from_args(args)
    main(data=options.kind, data_path=options.path, weights=options.weights, steps=args.steps,
         batch_size=args.batch_size, learning_rate=args.learning_rate,
         checkpoint_dir=args.checkpoint_dir, log_dir=args.log_dir,
         checkpoint_every=args.checkpoint_every, verify_checksum=not options.no_verify,
         module=args.module)


def main(data: str = "synthetic", data_path: str | None = None, weights: str | None = None,
         steps: int = DEFAULT_STEPS, batch_size: int = 64, learning_rate: float | None = None,
         checkpoint_dir: str = "runs/reference/checkpoints", log_dir: str = "runs/reference/logs",
         checkpoint_every: int = 100, val_size: int | None = None, verify_checksum: bool = True,
         module: str | os.PathLike | None = None, seed: int = 0) -> TrainResult:
    if steps < 1 or batch_size < 1 or checkpoint_every < 1:
        raise KitError("--steps, --batch-size and --checkpoint-every must be positive integers.")
    if module is None:
        from ...paths import solution
        try:
            module = solution()
        except KitError:
            raise KitError("expected --module FILE (your exercise module): without it the "
                           "reference solution is trained, and this install has none.") from None
    dataset = load_data(data, data_path, verify_checksum=verify_checksum)
    conv_weights, weights_source = vgg_weights.resolve(weights)
    ensure_writable_dir(checkpoint_dir, "--checkpoint-dir")
    ensure_writable_dir(log_dir, "--log-dir")
    if val_size is None:
        val_size = min(5000, len(dataset.train_labels) // 10)
    (train_x, train_y), (val_x, val_y) = dataset.split_validation(val_size)
    print(f"data: {dataset.name}, {len(train_y)} train / {len(val_y)} validation / "
          f"{len(dataset.test_labels)} test images")
    print(f"weights: {weights_source}")
    if not weights:
        print("notice: the stand-in weights only exercise the code path; pass --weights "
              "vgg16-conv-weights.npz for real transfer learning.")

    from ...modules import import_tensorflow_quietly, load_module

    import_tensorflow_quietly()
    import keras

    exercise = load_module(module)
    keras.utils.set_random_seed(seed)
    model = exercise.build_model(conv_weights, num_classes=len(dataset.class_names))
    start = exercise.restore_checkpoint(model, checkpoint_dir)
    if start:
        print(f"resuming from the checkpoint at step {start} in {checkpoint_dir}")
    train_ds = exercise.make_dataset(train_x, train_y, batch_size=batch_size, seed=seed)
    val_ds = exercise.make_dataset(val_x, val_y, batch_size=256, shuffle=False, repeat=False)
    options = {} if learning_rate is None else {"learning_rate": learning_rate}
    history = exercise.train(model, train_ds, val_ds, steps=steps, checkpoint_dir=checkpoint_dir,
                             checkpoint_every=checkpoint_every, log_dir=log_dir, verbose=True,
                             **options)
    logits = model.predict(dataset.test_images, batch_size=256, verbose=0)
    test_accuracy = float((logits.argmax(axis=1) == dataset.test_labels).mean())
    print(f"step {history['final_step']}: test accuracy {test_accuracy:.4f} "
          f"on {len(dataset.test_labels)} images")
    print(f"checkpoints: {checkpoint_dir}   TensorBoard: tensorboard --logdir {log_dir}")
    return TrainResult(start, history["final_step"], test_accuracy)
