"""What the benchmarks share: photos to classify, weights=None models, and the model-only rate."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

MODELS = {"mobilenetv2": "MobileNetV2", "resnet50v2": "ResNet50V2"}


def photos(n: int = 64, seed: int = 0) -> list[bytes]:
    """JPEG photos of varied sizes, cut from the sample photos scikit-learn ships."""
    from sklearn.datasets import load_sample_images

    base = [Image.fromarray(img) for img in load_sample_images().images]  # two 640x427 photos
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = base[i % len(base)]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((x, y, x + cw, y + ch))
        scale = rng.uniform(0.6, 1.4)
        crop = crop.resize((max(64, int(cw * scale)), max(64, int(ch * scale))))
        buf = io.BytesIO()
        crop.save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def build_model(arch: str, folder: Path) -> None:
    """A weights=None Keras application at 224x224 with 1,000 classes, saved with its labels."""
    import keras

    model = getattr(keras.applications, MODELS[arch])(weights=None, input_shape=(224, 224, 3), classes=1000)
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    (folder / "labels.json").write_text(json.dumps([f"class-{i}" for i in range(1000)]))


def model_only(
    folder: Path, batch_sizes: tuple[int, ...], seconds: float, shape: tuple[int, int, int] = (224, 224, 3)
) -> tuple[int, float]:
    """The best images/s of the model alone on pre-decoded tensors, and the batch size that gave it."""
    from kubeclassify.inference import artifacts

    loaded = artifacts.load(folder)
    best = (0, 0.0)
    for bs in batch_sizes:
        x = np.random.default_rng(0).random((bs, *shape), dtype=np.float32)
        loaded.predict(x)  # trace and warm up
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or n < 3 * bs:
            loaded.predict(x)
            n += bs
        rate = n / (time.perf_counter() - started)
        print(f"  model-only batch {bs:>3}: {rate:7.1f} img/s", flush=True)
        best = max(best, (bs, rate), key=lambda t: t[1])
    return best


def digits_cnn(folder: Path) -> list[bytes]:
    """The digits CNN (untrained: speed only) saved with its labels, and the 1,797 digits as PNGs."""
    from sklearn.datasets import load_digits

    from kubeclassify.core.resources import ImageInputSpec
    from kubeclassify.inference.architectures import build

    spec = ImageInputSpec(height=32, width=32, channels=1, color_mode="grayscale")
    folder.mkdir(parents=True)
    build("cnn", spec, 10).save(folder / "model.keras")
    (folder / "labels.json").write_text(json.dumps([str(i) for i in range(10)]))
    pngs = []
    for pixels in (load_digits().images * (255 / 16)).astype(np.uint8):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs


DIGITS_INPUT = {"height": 32, "width": 32, "channels": 1, "colorMode": "grayscale"}


def write_results(path: Path, results: dict[str, object]) -> None:
    """Keep a run's figures as JSON beside the printed table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")
