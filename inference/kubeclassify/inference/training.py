"""Train a classifier: a stratified split, a tf.data pipeline with augmentation, early stopping on
the validation loss and a learning rate that drops on plateaus, then held-out metrics."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kubeclassify.core.model_card import Metrics
from kubeclassify.core.resources import ImageInputSpec
from kubeclassify.inference.architectures import build
from kubeclassify.inference.datasets import LabelledImages
from kubeclassify.inference.preprocess import scale_pixels

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults suit the built-in digits and small image sets."""

    architecture: str = "cnn"
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 6
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    augment: bool = True
    seed: int = 0
    verbose: int | None = None  # Keras' progress: None shows a bar in a terminal, a line per epoch otherwise


@dataclass
class TrainResult:
    """The trained model and what is known about it."""

    model: keras.Model
    metrics: Metrics
    epochs: int
    best_validation_loss: float
    sizes: tuple[int, int, int]
    seconds: float
    test_images: np.ndarray
    test_labels: np.ndarray


def split(data: LabelledImages, config: TrainConfig) -> tuple[np.ndarray, ...]:
    """Stratified, seeded train / validation / test indices."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(data.labels))
    rest, test = train_test_split(
        idx, test_size=config.test_fraction, stratify=data.labels, random_state=config.seed
    )
    val_share = config.validation_fraction / (1.0 - config.test_fraction)
    train, val = train_test_split(
        rest, test_size=val_share, stratify=data.labels[rest], random_state=config.seed
    )
    return train, val, test


def evaluate(probabilities: np.ndarray, labels: np.ndarray, classes: list[str]) -> Metrics:
    """Accuracy, per-class accuracy and the confusion matrix of predictions."""
    predicted = probabilities.argmax(axis=1)
    n = len(classes)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    per_class = {c: float(matrix[i, i] / max(matrix[i].sum(), 1)) for i, c in enumerate(classes)}
    return Metrics(
        test_accuracy=float((predicted == labels).mean()),
        per_class_accuracy=per_class,
        confusion_matrix=matrix.tolist(),
    )


def train(data: LabelledImages, spec: ImageInputSpec, config: TrainConfig) -> TrainResult:
    """Train `config.architecture` on `data`, keeping the weights with the best validation loss."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    train_idx, val_idx, test_idx = split(data, config)
    augmenter = keras.Sequential(
        [
            keras.layers.RandomRotation(0.04, fill_mode="nearest", seed=config.seed),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=config.seed),
            keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=config.seed),
        ],
        name="augmentation",
    )

    def pipeline(indices: np.ndarray, training: bool) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((data.images[indices], data.labels[indices]))
        if training:
            ds = ds.shuffle(len(indices), seed=config.seed, reshuffle_each_iteration=True)
        ds = ds.batch(config.batch_size).map(
            lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE
        )
        if training and config.augment:
            ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(lambda x, y: (scale_pixels(x, spec), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    model = build(config.architecture, spec, len(data.classes))
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(config.patience // 2, 1), min_lr=1e-5
        ),
    ]
    verbose: Any = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
    started = time.monotonic()
    history = model.fit(
        pipeline(train_idx, True),
        validation_data=pipeline(val_idx, False),
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,
    )  # the pipeline shuffles
    seconds = time.monotonic() - started
    test_images = data.images[test_idx]
    probabilities = predict(lambda batch: model(batch, training=False), test_images, spec)
    return TrainResult(
        model=model,
        metrics=evaluate(probabilities, data.labels[test_idx], data.classes),
        epochs=len(history.history["loss"]),
        best_validation_loss=float(min(history.history["val_loss"])),
        sizes=(len(train_idx), len(val_idx), len(test_idx)),
        seconds=seconds,
        test_images=test_images,
        test_labels=data.labels[test_idx],
    )


def predict(
    fn: Callable[[np.ndarray], Any], images: np.ndarray, spec: ImageInputSpec, batch_size: int = 256
) -> np.ndarray:
    """Class probabilities for uint8 images: scaled as the spec says, then `fn` a batch at a time."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = scale_pixels(images[start : start + batch_size].astype(np.float32), spec).astype(np.float32)
        out.append(np.asarray(fn(batch)))
    return np.concatenate(out)
