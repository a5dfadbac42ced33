"""Subcommands of `kubeclassify` from the inference component. This module stays light:
TensorFlow is imported only when a command runs."""

from __future__ import annotations

import argparse
import itertools
import sys

TRAIN_HELP = """Train an image classifier and export it for a ModelDeployment.

SOURCE is one of:
  digits            the handwritten digits that scikit-learn ships (no download)
  DIR or s3://...   a folder per class, with the class's images inside
  FILE.csv          a CSV of image paths and labels (--path-column, --label-column, --root)
  DIR of IDX files  train-images-idx3-ubyte[.gz] and its labels (Fashion-MNIST's own files)

The export (--output, a folder or s3:// prefix) holds saved_model/, model.keras, labels.json,
model-card.json, confusion-matrix.png and samples.png; point a ModelDeployment's spec.model.uri at it.
"""


def register_train(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kubeclassify train`."""
    p = subparsers.add_parser(
        "train",
        help="train a classifier and export it",
        description=TRAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source", metavar="SOURCE", help="digits, a folder per class, a CSV, or a folder of IDX files"
    )
    p.add_argument("--output", "-o", required=True, help="where to export: a folder or s3://bucket/prefix")
    p.add_argument("--name", help="the model's name in its card (default: the output folder's name)")
    p.add_argument(
        "--architecture",
        choices=("cnn", "efficientnetb0"),
        default="cnn",
        help="a small CNN, or EfficientNetB0 without pretrained weights (default: %(default)s)",
    )
    p.add_argument(
        "--epochs", type=int, default=40, help="most epochs; early stopping may end sooner (%(default)s)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="starting rate (default: %(default)s)")
    p.add_argument(
        "--patience",
        type=int,
        default=6,
        help="epochs without improvement before stopping (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seeds the split, augmentation and weights (%(default)s)"
    )
    p.add_argument("--validation-fraction", type=float, default=0.15, help="(default: %(default)s)")
    p.add_argument("--test-fraction", type=float, default=0.15, help="(default: %(default)s)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no rotation, shift and zoom")
    p.add_argument("--height", type=int, default=32, help="input height (default: %(default)s)")
    p.add_argument("--width", type=int, default=32, help="input width (default: %(default)s)")
    p.add_argument(
        "--color-mode",
        choices=("rgb", "bgr", "grayscale"),
        help="default: grayscale for a CNN on grayscale data (digits, IDX), else rgb",
    )
    p.add_argument(
        "--scaling",
        choices=("0..1", "-1..1", "imagenet", "none"),
        help="default: 0..1 for cnn, none for efficientnetb0 (it scales inside)",
    )
    p.add_argument(
        "--resize-method",
        choices=("bilinear", "bicubic", "nearest", "lanczos", "box"),
        default="bilinear",
        help="(default: %(default)s)",
    )
    p.add_argument("--path-column", default="filepath", help="CSV: the image path column (%(default)s)")
    p.add_argument("--label-column", default="label", help="CSV: the label column (%(default)s)")
    p.add_argument("--root", help="CSV: what relative paths are relative to (default: the CSV's folder)")
    p.add_argument("--class-names", help="IDX: comma-separated names for labels 0, 1, ..., or fashion-mnist")
    p.add_argument("--limit", type=int, help="train on a random sample of this many images")
    p.add_argument(
        "--min-accuracy",
        type=float,
        default=0.8,
        help="warn when the held-out test accuracy is below this (default: %(default)s)",
    )
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices
    from pydantic import ValidationError

    from kubeclassify.core.resources import ImageInputSpec
    from kubeclassify.core.settings import Settings
    from kubeclassify.core.storage import ObjectStore, StorageError
    from kubeclassify.inference.datasets import (
        CLASS_NAME_PRESETS,
        DataError,
        materialize,
        samples_from,
        source_is_grayscale,
    )

    settings = Settings()
    store = ObjectStore(settings.s3)
    try:
        grayscale = args.architecture == "cnn" and source_is_grayscale(args.source)
        color_mode = args.color_mode or ("grayscale" if grayscale else "rgb")
        spec = ImageInputSpec(
            height=args.height,
            width=args.width,
            channels=1 if color_mode == "grayscale" else 3,
            color_mode=color_mode,
            resize_method=args.resize_method,
            scaling=args.scaling or ("none" if args.architecture == "efficientnetb0" else "0..1"),
        )
        if args.architecture == "efficientnetb0" and (
            spec.channels != 3 or min(spec.height, spec.width) < 32
        ):
            raise DataError("efficientnetb0 needs --color-mode rgb and --height/--width of at least 32")
        for name in ("epochs", "batch_size", "patience"):
            if getattr(args, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1")
        if not (
            0 < args.validation_fraction < 1
            and 0 < args.test_fraction < 1
            and args.validation_fraction + args.test_fraction < 1
        ):
            raise DataError(
                "--validation-fraction and --test-fraction must be between 0 and 1, and sum below 1"
            )
        destination = _destination(args.output)
        list(itertools.islice(store.iter_objects(destination + "/"), 1))  # a missing bucket fails now
        class_names = None
        if args.class_names:
            class_names = CLASS_NAME_PRESETS.get(args.class_names) or [
                c.strip() for c in args.class_names.split(",")
            ]
        samples = samples_from(
            args.source, store, args.path_column, args.label_column, args.root, class_names
        )
        data = materialize(samples, spec, args.source, limit=args.limit, seed=args.seed)
    except (DataError, ValidationError, StorageError) as e:
        print(f"kubeclassify train: error: {e}", file=sys.stderr)
        return 2

    print(
        f"Data: {args.source}: {len(data.labels)} images, {len(data.classes)} classes, "
        f"prepared as {data.images.shape[1:]} {data.images.dtype} ({spec.color_mode}, scaling {spec.scaling})"
    )
    width = max(len(c) for c in data.classes)
    for name, count in data.counts().items():
        print(f"  {name:<{width}}  {count:>6}")
    sys.stdout.flush()

    from kubeclassify.inference import artifacts
    from kubeclassify.inference.training import TrainConfig, train

    config = TrainConfig(
        architecture=args.architecture,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.patience,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        augment=args.augment,
        seed=args.seed,
    )
    result = train(data, spec, config)
    name = args.name or destination.rstrip("/").rsplit("/", 1)[-1]
    card = artifacts.export(result, data, spec, config, destination, store, name)
    print(
        f"Test accuracy: {card.metrics.test_accuracy:.4f} on {result.sizes[2]} held-out images "
        f"({result.epochs} epochs, {result.seconds:.0f}s)"
    )
    for cls, acc in card.metrics.per_class_accuracy.items():
        print(f"  {cls:<{width}}  {acc:.3f}")
    accuracy = card.metrics.test_accuracy
    print(f"Exported {card.name} version {card.version} to {destination}: test accuracy {accuracy:.1%}")
    if accuracy < args.min_accuracy:
        print(
            f"kubeclassify train: warning: the test accuracy {accuracy:.1%} is below --min-accuracy"
            f" {args.min_accuracy:.0%}; more epochs (--epochs), more data or another --architecture may help",
            file=sys.stderr,
        )
    return 0


def _destination(output: str) -> str:
    from pathlib import Path

    return output.rstrip("/") if "://" in output else "file://" + str(Path(output).resolve())


def register_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kubeclassify serve`: the predictor alone."""
    p = subparsers.add_parser(
        "serve",
        help="serve a ModelDeployment's model (KServe V1 and V2)",
        add_help=False,
        description="Run the predictor; every argument goes to `python -m kubeclassify.inference.predictor`.",
    )
    p.set_defaults(func=_serve, passthrough=True)


def _serve(args: argparse.Namespace) -> int:
    from kubeclassify.inference.predictor.server import main

    main(args.args, prog="kubeclassify serve")
    return 0


def register_batch_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kubeclassify batch run`: one shard of a ClassificationBatch, here."""
    from kubeclassify.inference.batch import cli

    run = commands.add_parser(
        "run",
        help="run a batch (or one shard of it) in this process",
        description=cli.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_arguments(run)
    run.set_defaults(func=cli.run_from_args)
