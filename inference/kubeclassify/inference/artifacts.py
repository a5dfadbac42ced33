"""Export a trained model, and load an exported one.

An export is a folder (local or S3):

    saved_model/        the serving form, from `model.export()` (tf.saved_model.load reads it)
    model.keras         the Keras form (keras.models.load_model reads it)
    labels.json         class names, in the order of the model's outputs
    model-card.json     data, training, metrics, input spec and the weights digest (the version)
    confusion-matrix.png, samples.png

A ModelDeployment's `spec.model.uri` may name the folder, its `saved_model/`, or `model.keras`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kubeclassify.core.model_card import (
    CARD_FILE,
    KERAS_FILE,
    LABELS_FILE,
    SAVED_MODEL_DIR,
    DatasetInfo,
    ModelCard,
    TrainingInfo,
)
from kubeclassify.core.resources import ImageInputSpec, ModelSpec
from kubeclassify.core.storage import Location, ObjectStore, StorageError, join
from kubeclassify.inference.datasets import LabelledImages
from kubeclassify.inference.plots import confusion_matrix_png, sample_grid

if TYPE_CHECKING:
    import keras

    from kubeclassify.inference.training import TrainConfig, TrainResult


class ModelError(RuntimeError):
    """No usable model at a location; the message says what was expected."""


def weights_digest(model: keras.Model) -> str:
    """sha256 over every weight's shape and bytes, in layer order: the same weights, the same digest."""
    h = hashlib.sha256()
    for w in model.get_weights():
        arr = np.ascontiguousarray(w)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()


def export(
    result: TrainResult,
    data: LabelledImages,
    spec: ImageInputSpec,
    config: TrainConfig,
    destination: str,
    store: ObjectStore,
    name: str,
) -> ModelCard:
    """Write the model in both forms, with labels, card and pictures, to `destination`."""
    import tensorflow as tf

    digest = weights_digest(result.model)
    train_size, val_size, test_size = result.sizes
    card = ModelCard(
        name=name,
        version=digest.split(":", 1)[1][:12],
        weights_digest=digest,
        created=dt.datetime.now(dt.UTC).replace(microsecond=0),
        input=spec,
        labels=data.classes,
        dataset=DatasetInfo(
            source=data.source,
            classes=data.classes,
            class_counts=data.counts(),
            train_size=train_size,
            validation_size=val_size,
            test_size=test_size,
        ),
        training=TrainingInfo(
            architecture=config.architecture,
            epochs=result.epochs,
            max_epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            seed=config.seed,
            augmentation=config.augment,
            best_validation_loss=result.best_validation_loss,
            seconds=round(result.seconds, 2),
        ),
        metrics=result.metrics,
        tensorflow_version=tf.__version__,
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result.model.save(folder / KERAS_FILE)
        result.model.export(str(folder / SAVED_MODEL_DIR), verbose=False)
        (folder / LABELS_FILE).write_text(json.dumps(data.classes, indent=1, ensure_ascii=False))
        (folder / CARD_FILE).write_text(json.dumps(card.to_k8s(), indent=1, ensure_ascii=False))
        (folder / "confusion-matrix.png").write_bytes(
            confusion_matrix_png(card.metrics.confusion_matrix, data.classes)
        )
        (folder / "samples.png").write_bytes(sample_grid(data.images, data.labels, data.classes))
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            store.write(join(destination, path.relative_to(folder).as_posix()), path.read_bytes())
    return card


@dataclass
class LoadedModel:
    """A model ready to predict: `predict` takes a scaled float32 batch and returns probabilities."""

    predict: Callable[[np.ndarray], np.ndarray]
    labels: list[str] | None
    card: ModelCard | None
    format: str
    path: Path
    handle: Any  # the loaded object: it owns the variables `predict` reads, so it must live as long


def fetch(uri: str, store: ObjectStore, into: Path) -> Path:
    """A local path for a model URI: file:// as is; s3:// downloaded into `into`."""
    loc = Location.parse(uri)
    if loc.scheme == "file":
        return Path(loc.key)
    into.mkdir(parents=True, exist_ok=True)
    try:
        if uri.endswith(".keras"):
            parent = uri.rsplit("/", 1)[0]
            names = [uri.rsplit("/", 1)[1], LABELS_FILE, CARD_FILE]
            for n in names:
                if n == names[0] or store.exists(join(parent, n)):
                    (into / n).write_bytes(store.read(join(parent, n)))
            return into / names[0]
        prefix = uri.rstrip("/") + "/"
        found = False
        for obj in store.iter_objects(prefix):
            target = into / obj.uri[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.read(obj.uri))
            found = True
    except StorageError as e:
        raise ModelError(f"cannot fetch the model from {uri}: {e}") from e
    if not found:
        raise ModelError(f"no model at {uri}: nothing is stored under that prefix")
    return into


def load(path: Path, prefer: str = "savedmodel") -> LoadedModel:
    """Load a model from a local export folder, SavedModel folder or .keras file."""
    import keras
    import tensorflow as tf

    if path.is_file() and path.suffix == ".keras":
        fmt, model_path, meta = "keras", path, path.parent
    elif (path / "saved_model.pb").is_file():
        fmt, model_path = "savedmodel", path
        meta = path if (path / LABELS_FILE).exists() or (path / CARD_FILE).exists() else path.parent
    elif path.is_dir():
        options = {"savedmodel": path / SAVED_MODEL_DIR, "keras": path / KERAS_FILE}
        present = [f for f in (prefer, *options) if f in options and options[f].exists()]
        if not present:
            raise ModelError(
                f"no model at {path}: expected {SAVED_MODEL_DIR}/ or {KERAS_FILE} (from `kubeclassify"
                " train`), a SavedModel folder, or a .keras file"
            )
        fmt, model_path, meta = present[0], options[present[0]], path
    else:
        raise ModelError(f"no model at {path}: it does not exist")

    try:
        if fmt == "keras":
            handle: Any = keras.models.load_model(model_path, compile=False)
            # A tf.function: an eager Keras call costs tens of milliseconds; a graph call, far less.
            graph = tf.function(lambda x: handle(x, training=False))

            def predict(x: np.ndarray) -> np.ndarray:
                return np.asarray(graph(tf.constant(x)))
        else:
            handle = tf.saved_model.load(str(model_path))
            serve = handle.serve if hasattr(handle, "serve") else handle.signatures["serving_default"]

            def predict(x: np.ndarray) -> np.ndarray:
                out = serve(tf.constant(x))
                return np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)
    except (OSError, ValueError) as e:
        raise ModelError(f"the model at {model_path} cannot be loaded: {e}") from e

    card = (
        ModelCard.model_validate_json((meta / CARD_FILE).read_text()) if (meta / CARD_FILE).exists() else None
    )
    labels = json.loads((meta / LABELS_FILE).read_text()) if (meta / LABELS_FILE).exists() else None
    if labels is None and card is not None:
        labels = card.labels
    return LoadedModel(predict=predict, labels=labels, card=card, format=fmt, path=model_path, handle=handle)


def load_for_deployment(
    model: ModelSpec, store: ObjectStore, local_dir: Path | None = None
) -> tuple[LoadedModel, list[str], str]:
    """A ModelDeployment's model, its labels and its version.

    The model is read from `local_dir` when it has files (KServe's storage initializer fills
    /mnt/models), else fetched from `model.uri`. Labels: `model.labels`, else `labelsUri` (a JSON
    list or one name a line), else labels.json beside the model, else the card's. Version:
    `model.version`, else the card's, else a digest of the model's files."""
    if local_dir is not None and local_dir.exists() and any(local_dir.iterdir()):
        path = local_dir
    else:
        path = fetch(model.uri, store, Path(tempfile.mkdtemp(prefix="kubeclassify-model-")))
    loaded = load(path, prefer=model.resolved_format)
    labels: list[str] | None = list(model.labels) if model.labels else None
    if labels is None and model.labels_uri:
        try:
            text = store.read(model.labels_uri).decode()
        except StorageError as e:
            raise ModelError(f"cannot read the labels: {e}") from e
        try:
            labels = [str(x) for x in json.loads(text)]
        except json.JSONDecodeError:
            labels = [line.strip() for line in text.splitlines() if line.strip()]
    labels = labels or loaded.labels
    if not labels:
        raise ModelError("no labels: set spec.model.labels or labelsUri, or put labels.json beside the model")
    version = model.version or (loaded.card.version if loaded.card else _files_digest(loaded.path))
    return loaded, [str(x) for x in labels], version


def _files_digest(path: Path) -> str:
    """A version for a model without a card: sha256 over its files, in path order."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]
