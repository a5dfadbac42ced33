"""The model card: what `kubeclassify train` writes beside every exported model, and what the
predictor and the batch worker read to know the model's labels, input and version."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import Field

from kubeclassify.core.resources.common import Model
from kubeclassify.core.resources.model_deployment import ImageInputSpec

CARD_FILE = "model-card.json"
LABELS_FILE = "labels.json"
KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"


class DatasetInfo(Model):
    """What the model was trained on."""

    source: str = Field(description="Where the images came from (a path, a URI, or 'digits').")
    classes: list[str] = Field(description="Class names, in the order of the model's outputs.")
    class_counts: dict[str, int] = Field(description="Images per class, before the split.")
    train_size: int = Field(description="Images used for training.")
    validation_size: int = Field(description="Images used for early stopping and the learning rate.")
    test_size: int = Field(description="Images held out for the reported accuracy.")


class TrainingInfo(Model):
    """How the model was trained."""

    architecture: str = Field(description="cnn or efficientnetb0.")
    epochs: int = Field(description="Epochs run (early stopping may end before the maximum).")
    max_epochs: int = Field(description="The maximum asked for.")
    batch_size: int = Field(description="Images per training step.")
    learning_rate: float = Field(description="The starting learning rate.")
    seed: int = Field(description="The seed of the split, the augmentation and the initial weights.")
    augmentation: bool = Field(description="Whether rotation, shift and zoom augmentation was on.")
    best_validation_loss: float = Field(description="The validation loss of the weights kept.")
    seconds: float = Field(description="Wall-clock training time.")


class Metrics(Model):
    """Accuracy on the held-out test split."""

    test_accuracy: float = Field(description="Share of test images classified correctly.")
    per_class_accuracy: dict[str, float] = Field(description="Test accuracy of each class.")
    confusion_matrix: list[list[int]] = Field(description="Rows: true class; columns: predicted class.")


class ModelCard(Model):
    """Everything worth knowing about one exported model."""

    name: str = Field(description="The model's name.")
    version: str = Field(description="A short form of the weights digest, reported with every result.")
    weights_digest: str = Field(description="sha256 over the weights, in layer order.")
    created: dt.datetime = Field(description="When the model was exported.")
    input: ImageInputSpec = Field(description="How images must be prepared for this model.")
    labels: list[str] = Field(description="Class names, in the order of the model's outputs.")
    dataset: DatasetInfo = Field(description="The training data.")
    training: TrainingInfo = Field(description="The training run.")
    metrics: Metrics = Field(description="Held-out accuracy.")
    tensorflow_version: str = Field(description="The TensorFlow that trained it.")


def model_deployment(card: ModelCard, uri: str, name: str | None = None) -> dict[str, Any]:
    """The ModelDeployment that serves the model `card` describes from `uri`: its input spec, labels
    (from the labels.json beside it), description and version all come from the card, so nothing is
    copied by hand. Checked against the ModelDeployment model before it is returned."""
    from kubeclassify.core.constants import API_VERSION, MODEL_DEPLOYMENT
    from kubeclassify.core.resources.model_deployment import ModelDeployment

    name = name or card.name
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise ValueError(f"{name!r} cannot name a ModelDeployment: lower-case letters, digits and dashes")
    accuracy = f"{card.metrics.test_accuracy:.1%}"
    resource = {
        "apiVersion": API_VERSION,
        "kind": MODEL_DEPLOYMENT,
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": uri,
                "version": card.version,
                "description": f"{card.training.architecture} trained on {card.dataset.source}"
                f" ({len(card.labels)} classes, {accuracy} held-out accuracy), {card.created:%Y-%m-%d}",
            },
            "input": card.input.to_k8s(),
        },
    }
    ModelDeployment.model_validate(resource)
    return resource
