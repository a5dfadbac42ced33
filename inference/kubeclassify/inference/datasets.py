"""Labelled image sets for training: scikit-learn's handwritten digits, a folder per class, a CSV
of paths and labels, or IDX files (the format Fashion-MNIST ships in), on disk or in S3.

Every source becomes a list of samples first; `materialize` then checks the set (at least two
classes, enough images per class) and decodes every image, listing the unreadable ones, before
any training starts.
"""

from __future__ import annotations

import csv
import gzip
import random
import struct
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from kubeclassify.core.constants import IMAGE_EXTENSIONS
from kubeclassify.core.resources import ImageInputSpec
from kubeclassify.core.storage import Location, ObjectStore, StorageError, join
from kubeclassify.inference.preprocess import ImageError, decode, prepare

FASHION_MNIST = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CLASS_NAME_PRESETS = {"fashion-mnist": FASHION_MNIST}
MIN_PER_CLASS = 3  # one each for training, validation and test


class DataError(ValueError):
    """The training data cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Sample:
    """One image to be: where it is, its class, and how to open it."""

    ref: str
    label: str
    open: Callable[[], Image.Image]


@dataclass
class LabelledImages:
    """Decoded images (N x H x W x C, uint8), their class indices, and the class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: str

    def counts(self) -> dict[str, int]:
        found = Counter(int(i) for i in self.labels)
        return {name: found.get(i, 0) for i, name in enumerate(self.classes)}


def source_is_grayscale(source: str) -> bool:
    """Whether a source's images are grayscale by nature (digits and IDX files are)."""
    return source == "digits" or _is_idx_folder(_to_uri(source))


def samples_from(
    source: str,
    store: ObjectStore,
    path_column: str = "filepath",
    label_column: str = "label",
    root: str | None = None,
    class_names: list[str] | None = None,
) -> list[Sample]:
    """The samples of a source: 'digits', a CSV, a folder of IDX files, or a folder per class."""
    if source == "digits":
        return _digits()
    uri = _to_uri(source)
    try:
        if uri.lower().endswith(".csv"):
            return _csv(uri, store, path_column, label_column, root)
        if _is_idx_folder(uri):
            return _idx(uri, store, class_names)
        return _folders(uri, store)
    except StorageError as e:
        raise DataError(f"cannot read {source}: {e}") from e


def materialize(
    samples: list[Sample],
    spec: ImageInputSpec,
    source: str,
    limit: int | None = None,
    seed: int = 0,
    workers: int = 8,
) -> LabelledImages:
    """Check the set and decode every image (in parallel); unreadable images are listed in the error."""
    if not samples:
        raise DataError(f"no images found in {source}")
    if limit is not None and limit < len(samples):
        samples = random.Random(seed).sample(samples, limit)
    counts = Counter(s.label for s in samples)
    classes = sorted(counts, key=_natural)
    if len(classes) < 2:
        raise DataError(f"{source} has one class only ({classes[0]!r}): a classifier needs at least two")
    few = {c: n for c, n in counts.items() if n < MIN_PER_CLASS}
    if few:
        raise DataError(
            f"every class needs at least {MIN_PER_CLASS} images (training, validation, test); too few: "
            + ", ".join(f"{c!r} ({n})" for c, n in sorted(few.items()))
        )

    def load(sample: Sample) -> np.ndarray | str:
        try:
            return prepare(sample.open(), spec)
        except (ImageError, StorageError, OSError) as e:
            return f"{sample.ref}: {e}"

    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(load, samples))
    errors = [a for a in arrays if isinstance(a, str)]
    if errors:
        shown = "\n  ".join(errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise DataError(f"{len(errors)} of {len(samples)} images cannot be read:\n  {shown}{more}")
    index = {name: i for i, name in enumerate(classes)}
    return LabelledImages(
        images=np.stack([a for a in arrays if not isinstance(a, str)]),
        labels=np.array([index[s.label] for s in samples], dtype=np.int64),
        classes=classes,
        source=source,
    )


# --- sources ------------------------------------------------------------------------------------


def _natural(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)


def _to_uri(source: str) -> str:
    if "://" in source:
        return source
    return "file://" + str(Path(source).resolve())


def _from_bytes(store: ObjectStore, uri: str) -> Callable[[], Image.Image]:
    return lambda: decode(store.read(uri))


def _from_array(arr: np.ndarray) -> Callable[[], Image.Image]:
    return lambda: Image.fromarray(arr)


def _digits() -> list[Sample]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)  # 8x8, values 0..16
    return [
        Sample(f"digits[{i}]", str(int(t)), _from_array(img))
        for i, (img, t) in enumerate(zip(images, digits.target, strict=True))
    ]


def _folders(uri: str, store: ObjectStore) -> list[Sample]:
    base = uri.rstrip("/") + "/"
    loc = Location.parse(base)
    if loc.scheme == "file":
        path = Path(loc.key)
        if not path.is_dir():
            raise DataError(f"{path} is not a folder (expected a folder per class, a CSV, or 'digits')")
        empty = [
            d.name
            for d in sorted(path.iterdir())
            if d.is_dir()
            and not any(f.suffix.lower() in IMAGE_EXTENSIONS for f in d.rglob("*") if f.is_file())
        ]
        if empty:
            raise DataError(f"class folders without images in {path}: {', '.join(empty)}")
    samples = []
    for obj in store.iter_objects(base):
        rel = PurePosixPath(obj.uri[len(base) :])
        if len(rel.parts) < 2 or rel.suffix.lower() not in IMAGE_EXTENSIONS:
            continue  # files beside the class folders, and non-image files
        samples.append(Sample(obj.uri, rel.parts[0], _from_bytes(store, obj.uri)))
    return samples


def _csv(uri: str, store: ObjectStore, path_column: str, label_column: str, root: str | None) -> list[Sample]:
    base = root or uri.rsplit("/", 1)[0]
    samples = []
    with store.open_text(uri) as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in (path_column, label_column) if c not in columns]
        if missing:
            raise DataError(
                f"{uri} has no column {', '.join(repr(m) for m in missing)}; its columns are: "
                + (", ".join(repr(c) for c in columns) or "none (the file is empty)")
            )
        for line, row in enumerate(reader, start=2):
            path, label = (row.get(path_column) or "").strip(), (row.get(label_column) or "").strip()
            if not path or not label:
                raise DataError(f"{uri}, line {line}: empty {path_column!r} or {label_column!r}")
            target = path if "://" in path else join(base, path)
            samples.append(Sample(target, label, _from_bytes(store, target)))
    return samples


def _is_idx_folder(uri: str) -> bool:
    loc = Location.parse(uri)
    if loc.scheme != "file":
        return False
    path = Path(loc.key)
    return path.is_dir() and any(p.name.split(".")[0].endswith("idx3-ubyte") for p in path.iterdir())


def read_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (gzip-compressed or not): a big-endian header, then the array."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0:2] != b"\x00\x00":
        raise DataError("not an IDX file: the magic number is wrong")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    code, ndim = data[2], data[3]
    if code not in dtypes:
        raise DataError(f"not an IDX file: unknown type code {code:#x}")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(dtypes[code])
    body = data[4 + 4 * ndim :]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(body) != expected:
        raise DataError(f"IDX file is truncated or padded: {len(body)} bytes of data, expected {expected}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _idx(uri: str, store: ObjectStore, class_names: list[str] | None) -> list[Sample]:
    folder = Path(Location.parse(uri).key)
    samples: list[Sample] = []
    for images_path in sorted(folder.iterdir()):
        stem = images_path.name.split(".")[0]
        if not stem.endswith("idx3-ubyte"):
            continue
        labels_stem = stem.replace("images", "labels").replace("idx3", "idx1")
        candidates = [p for p in folder.iterdir() if p.name.split(".")[0] == labels_stem]
        if not candidates:
            raise DataError(f"{images_path.name} has no labels file ({labels_stem}[.gz]) beside it")
        images = read_idx(images_path.read_bytes())
        labels = read_idx(candidates[0].read_bytes())
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{images_path.name}: {images.shape} images do not match {labels.shape} labels")
        names = class_names or [str(i) for i in range(int(labels.max()) + 1)]
        if int(labels.max()) >= len(names):
            raise DataError(
                f"{candidates[0].name} has label {int(labels.max())}, but {len(names)} class names"
            )
        samples += [
            Sample(f"{images_path.name}[{i}]", names[int(t)], _from_array(img.astype(np.uint8)))
            for i, (img, t) in enumerate(zip(images, labels, strict=True))
        ]
    return samples
