"""What the benchmarks share: photos to classify, weights=None models, and the model-only rate."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    folder: Path,
    batch_sizes: tuple[int, ...],
    seconds: float,
    shape: tuple[int, int, int] = (224, 224, 3),
    streams: int = 1,
) -> tuple[int, float, float]:
    """The best images/s of the model alone on pre-decoded tensors, the batch size that gave it, and
    the CPU time it took per image in milliseconds.

    `streams` threads call the model at once (the batch worker's way on a CPU: one per core)."""
    from kubeclassify.inference import artifacts

    loaded = artifacts.load(folder)
    best = (0, 0.0, 0.0)
    for bs in batch_sizes:
        x = np.random.default_rng(0).random((bs, *shape), dtype=np.float32)
        loaded.predict(x)  # trace and warm up
        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(streams) as pool:
            calls = [pool.submit(_images, loaded.predict, x, seconds) for _ in range(streams)]
            done = sum(c.result() for c in calls)
        rate = done / (time.perf_counter() - started)
        core_ms = 1000 * (time.process_time() - cpu) / done
        print(f"  model-only batch {bs:>3}, {streams} at once: {rate:7.1f} img/s", flush=True)
        best = max(best, (bs, rate, core_ms), key=lambda t: t[1])
    return best


def _images(predict: Any, x: np.ndarray, seconds: float) -> int:
    """Images through `predict` in back-to-back calls for `seconds` (at least three calls)."""
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or n < 3 * len(x):
        predict(x)
        n += len(x)
    return n


def model_only_fresh(
    folder: Path,
    batch_sizes: tuple[int, ...],
    seconds: float,
    shape: tuple[int, int, int] = (224, 224, 3),
    streams: int = 1,
) -> tuple[int, float, float]:
    """`model_only` in a new process, whose TensorFlow pools are sized for `streams` as the batch
    worker sizes them (`kubeclassify.inference.threads`); TensorFlow fixes them once per process."""
    args = json.dumps([str(folder), batch_sizes, seconds, shape, streams])
    done = subprocess.run([sys.executable, __file__, args], check=True, stdout=subprocess.PIPE, text=True)
    lines = done.stdout.rstrip().splitlines()
    print("\n".join(lines[:-1]), flush=True)
    bs, rate, core_ms = json.loads(lines[-1])
    return int(bs), float(rate), float(core_ms)


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


if __name__ == "__main__":  # model_only_fresh's child: the arguments as one JSON list
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    folder_arg, sizes_arg, seconds_arg, shape_arg, streams_arg = json.loads(sys.argv[1])
    from kubeclassify.inference import threads

    threads.configure(streams_arg)
    result = model_only(Path(folder_arg), tuple(sizes_arg), seconds_arg, tuple(shape_arg), streams_arg)
    print(json.dumps(result))
