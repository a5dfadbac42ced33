"""The model architectures `kubeclassify train` builds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubeclassify.core.resources import ImageInputSpec

if TYPE_CHECKING:
    import keras

ARCHITECTURES = ("cnn", "efficientnetb0")


def build(architecture: str, spec: ImageInputSpec, n_classes: int) -> keras.Model:
    """A fresh, uncompiled model for `spec`-shaped input with a softmax over `n_classes`."""
    import keras

    shape = (spec.height, spec.width, spec.channels)
    if architecture == "cnn":
        inputs = keras.Input(shape, name="image")
        x = inputs
        for filters in (32, 64, 128):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization(momentum=0.9)(x)  # small sets take few steps an epoch
            x = keras.layers.Activation("relu")(x)
            x = keras.layers.MaxPooling2D()(x) if filters < 128 else x
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dropout(0.3)(x)
        outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
        return keras.Model(inputs, outputs, name="cnn")
    if architecture == "efficientnetb0":
        if spec.channels != 3 or min(spec.height, spec.width) < 32:
            raise ValueError("efficientnetb0 needs 3 channels and inputs of at least 32x32")
        # Keras' EfficientNet rescales inside the model: feed it 0..255 (scaling "none").
        return keras.applications.EfficientNetB0(
            weights=None, include_top=True, classes=n_classes, input_shape=shape
        )
    raise ValueError(f"unknown architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
