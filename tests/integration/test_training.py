"""`kubeclassify train`: the digits model, EfficientNetB0, the IDX reader, every data source, and
the errors a person gets before any training starts."""

from __future__ import annotations

import csv
import gzip
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kubeclassify.core.cli import main
from kubeclassify.core.model_card import ModelCard
from kubeclassify.core.resources import ImageInputSpec
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore, join
from kubeclassify.inference import artifacts
from kubeclassify.inference.datasets import FASHION_MNIST, DataError, materialize, read_idx, samples_from
from kubeclassify.inference.training import TrainConfig, predict, split

DIGITS_SPEC = ImageInputSpec(height=32, width=32, channels=1, color_mode="grayscale", scaling="0..1")


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    """The digits test split the fixture model never saw (same seed, same split)."""
    store = ObjectStore()
    data = materialize(samples_from("digits", store), DIGITS_SPEC, "digits")
    _, _, test = split(data, TrainConfig())
    return data.images[test], data.labels[test]


def test_digits_model_is_accurate_and_fully_exported(digits_model: Path) -> None:
    names = {p.name for p in digits_model.iterdir()}
    assert names >= {
        "saved_model",
        "model.keras",
        "labels.json",
        "model-card.json",
        "confusion-matrix.png",
        "samples.png",
    }
    card = ModelCard.model_validate_json((digits_model / "model-card.json").read_text())
    assert card.metrics.test_accuracy >= 0.95
    assert (
        card.labels == [str(i) for i in range(10)] == json.loads((digits_model / "labels.json").read_text())
    )
    assert card.input == DIGITS_SPEC
    assert card.version == card.weights_digest.removeprefix("sha256:")[:12]
    assert card.dataset.train_size + card.dataset.validation_size + card.dataset.test_size == 1797
    assert sum(map(sum, card.metrics.confusion_matrix)) == card.dataset.test_size
    for png in ("confusion-matrix.png", "samples.png"):
        assert Image.open(digits_model / png).format == "PNG"


def test_both_export_forms_load_and_predict_alike(
    digits_model: Path, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = held_out
    saved = artifacts.load(digits_model)
    keras_form = artifacts.load(digits_model / "model.keras")
    assert saved.format == "savedmodel" and keras_form.format == "keras"
    assert saved.labels == keras_form.labels == [str(i) for i in range(10)]
    p_saved = predict(saved.predict, images, DIGITS_SPEC)
    p_keras = predict(keras_form.predict, images, DIGITS_SPEC)
    np.testing.assert_allclose(p_saved, p_keras, atol=1e-5)
    assert (p_saved.argmax(1) == labels).mean() >= 0.95
    also = artifacts.load(digits_model / "saved_model")
    assert also.card is not None and also.card.name == "digits"


def test_a_model_in_s3_is_fetched_and_loads(
    digits_model: Path,
    store: ObjectStore,
    bucket: str,
    tmp_path: Path,
    held_out: tuple[np.ndarray, np.ndarray],
) -> None:
    for path in digits_model.rglob("*"):
        if path.is_file():
            store.write(
                join(f"s3://{bucket}/digits", path.relative_to(digits_model).as_posix()), path.read_bytes()
            )
    local = artifacts.fetch(f"s3://{bucket}/digits/", store, tmp_path / "a")
    model = artifacts.load(local)
    keras_file = artifacts.fetch(f"s3://{bucket}/digits/model.keras", store, (tmp_path / "b"))
    keras_model = artifacts.load(keras_file)
    images, _ = held_out
    np.testing.assert_allclose(
        predict(model.predict, images[:16], DIGITS_SPEC),
        predict(keras_model.predict, images[:16], DIGITS_SPEC),
        atol=1e-5,
    )
    assert keras_model.labels == model.labels
    with pytest.raises(artifacts.ModelError, match="nothing is stored"):
        artifacts.fetch(f"s3://{bucket}/nothing-here/", store, tmp_path / "c")


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(artifacts.ModelError, match="does not exist"):
        artifacts.load(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(artifacts.ModelError, match="expected saved_model/ or model.keras"):
        artifacts.load(tmp_path / "empty")


def test_efficientnet_trains_one_short_epoch_and_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "effnet"
    code = main(
        [
            "train",
            "digits",
            "--output",
            str(out),
            "--architecture",
            "efficientnetb0",
            "--epochs",
            "1",
            "--limit",
            "120",
            "--batch-size",
            "32",
        ]
    )
    assert code == 0
    card = ModelCard.model_validate_json((out / "model-card.json").read_text())
    assert card.training.architecture == "efficientnetb0" and card.training.epochs == 1
    printed = capsys.readouterr()
    accuracy = card.metrics.test_accuracy
    assert printed.out.rstrip().endswith(f"test accuracy {accuracy:.1%}")  # the last word is the accuracy
    assert ("warning: the test accuracy" in printed.err) == (accuracy < 0.8)  # --min-accuracy's default
    assert (card.input.height, card.input.width, card.input.channels, card.input.scaling) == (
        32,
        32,
        3,
        "none",
    )
    loaded = artifacts.load(out)
    probabilities = loaded.predict(np.zeros((2, 32, 32, 3), dtype=np.float32))
    assert probabilities.shape == (2, 10)


# --- the IDX reader ----------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = struct.pack(">BBBB", 0, 0, codes[arr.dtype], arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def test_idx_reader_reads_plain_and_gzip_files() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    assert np.array_equal(read_idx(idx_bytes(images)), images)
    assert np.array_equal(read_idx(gzip.compress(idx_bytes(images))), images)
    wide = np.arange(6, dtype=">i4").reshape(2, 3)
    assert np.array_equal(read_idx(idx_bytes(wide)), wide)
    with pytest.raises(DataError, match="magic"):
        read_idx(b"\x01\x02\x08\x01")
    with pytest.raises(DataError, match="truncated"):
        read_idx(idx_bytes(images)[:-10])


def test_idx_folder_is_a_data_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 3)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    samples = samples_from(
        str(tmp_path),
        ObjectStore(),
        class_names=FASHION_MNIST,
    )
    data = materialize(samples, DIGITS_SPEC, str(tmp_path))
    assert data.images.shape == (30, 32, 32, 1)
    assert data.counts() == {name: 3 for name in data.classes}
    assert "Ankle boot" in data.classes


# --- folders and CSVs, and their errors --------------------------------------------------------------


def png(value: int, size: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, value // 2, 255 - value)).save(buf, format="PNG")
    return buf.getvalue()


def make_folders(root: Path, classes: dict[str, int]) -> Path:
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / name / f"{i}.png").write_bytes(png(40 * i))
    return root


def test_folder_per_class_and_csv_sources(tmp_path: Path) -> None:
    spec = ImageInputSpec(height=16, width=16)
    folder = make_folders(tmp_path / "folders", {"cat": 3, "dog": 4})
    (folder / "README.txt").write_text("not an image")
    data = materialize(samples_from(str(folder), ObjectStore()), spec, "folders")
    assert data.classes == ["cat", "dog"] and data.counts() == {"cat": 3, "dog": 4}
    assert data.images.shape == (7, 16, 16, 3)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filepath", "label"])
        w.writerows(
            [[f"folders/cat/{i}.png", "cat"] for i in range(3)]
            + [[f"folders/dog/{i}.png", "dog"] for i in range(3)]
        )
    data = materialize(samples_from(str(tmp_path / "labels.csv"), ObjectStore()), spec, "csv")
    assert data.counts() == {"cat": 3, "dog": 3}


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, s3_settings: S3Settings) -> None:
    """The command reads S3 access from the environment, as in a pod."""
    monkeypatch.setenv("KUBECLASSIFY_S3__ENDPOINT_URL", str(s3_settings.endpoint_url))
    monkeypatch.setenv("KUBECLASSIFY_S3__ACCESS_KEY_ID", str(s3_settings.access_key_id))
    assert s3_settings.secret_access_key is not None
    monkeypatch.setenv("KUBECLASSIFY_S3__SECRET_ACCESS_KEY", s3_settings.secret_access_key.get_secret_value())
    monkeypatch.setenv("KUBECLASSIFY_S3__MAX_ATTEMPTS", "1")


def train_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["train", *args]) == 2
    captured = capsys.readouterr()
    assert "Epoch" not in captured.out, "training must not start"
    return captured.err


def test_bad_training_data_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], s3_env: None, store: ObjectStore, bucket: str
) -> None:
    out = ["--output", str(tmp_path / "out")]
    (tmp_path / "nothing").mkdir()
    assert "no images found" in train_error(capsys, str(tmp_path / "nothing"), *out)

    make_folders(tmp_path / "with-empty", {"cat": 3})
    (tmp_path / "with-empty" / "dog").mkdir()
    assert "class folders without images" in train_error(capsys, str(tmp_path / "with-empty"), *out)

    make_folders(tmp_path / "single", {"cat": 5})
    assert "one class only ('cat')" in train_error(capsys, str(tmp_path / "single"), *out)

    broken = make_folders(tmp_path / "broken", {"cat": 3, "dog": 3})
    (broken / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a png")
    (broken / "cat" / "truncated.png").write_bytes(png(10, size=64)[:60])
    err = train_error(capsys, str(broken), *out)
    assert "2 of 8 images cannot be read" in err and "bad.png" in err and "truncated.png" in err

    (tmp_path / "nolabel.csv").write_text("filepath,category\na.png,cat\n")
    err = train_error(capsys, str(tmp_path / "nolabel.csv"), *out)
    assert "has no column 'label'; its columns are: 'filepath', 'category'" in err

    assert "bucket 'no-such-training-bucket' does not exist" in train_error(
        capsys, "s3://no-such-training-bucket/images/", *out
    )
    assert "no images found in s3://" in train_error(capsys, f"s3://{bucket}/images/", *out)
    assert "bucket 'no-such-model-bucket' does not exist" in train_error(
        capsys, "digits", "--output", "s3://no-such-model-bucket/digits"
    )
    assert "efficientnetb0 needs" in train_error(
        capsys, "digits", *out, "--architecture", "efficientnetb0", "--height", "16", "--width", "16"
    )
    assert "--test-fraction" in train_error(capsys, "digits", *out, "--test-fraction", "0.9")


def test_a_folder_per_class_in_s3_trains(
    tmp_path: Path, s3_env: None, store: ObjectStore, bucket: str
) -> None:
    for cls, offset in (("bright", 200), ("dark", 0)):
        for i in range(12):
            store.write(f"s3://{bucket}/images/{cls}/{i}.png", png(offset + i))
    code = main(
        [
            "train",
            f"s3://{bucket}/images/",
            "--output",
            f"s3://{bucket}/models/tiny",
            "--epochs",
            "2",
            "--height",
            "16",
            "--width",
            "16",
        ]
    )
    assert code == 0
    card = ModelCard.model_validate_json(store.read(f"s3://{bucket}/models/tiny/model-card.json"))
    assert card.labels == ["bright", "dark"] and card.name == "tiny"
    assert store.exists(f"s3://{bucket}/models/tiny/saved_model/saved_model.pb")
