"""Sample data for the local stack and the demo, made from the handwritten digits scikit-learn ships.

The digits split in two: the first `TRAIN_COUNT` train the model (a folder per class), the rest are
the demo's daily images, which the model has never seen, so the accuracy the demo prints is honest.
The daily images follow the layout of a real drop: `<date>/<id>.png` under a bucket, and one
metadata CSV (`filepath`, `date`, `label`) for every date. A few are broken on purpose: a truncated
PNG, a text file named .png, an empty file, and a row whose file was never uploaded.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

from kubeclassify.core.storage import ObjectStore

TRAIN_COUNT = 1497  # of 1797 digits: 300 stay unseen for the daily images
TRAIN_FLAGS = ("--color-mode", "grayscale", "--height", "32", "--width", "32")
BROKEN = {
    "truncated.png": "the first half of a PNG",
    "not-an-image.png": "text, not an image",
    "empty.png": "zero bytes",
    "never-uploaded.png": "listed in the CSV, missing from the bucket",
}


def _digits() -> tuple[list[bytes], list[str]]:
    """Every digit as an 8x8 grayscale PNG, and its label."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pngs = []
    for pixels in (digits.images * (255.0 / 16.0)).round().astype(np.uint8):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs, [str(t) for t in digits.target]


def write_training_set(folder: Path) -> Path:
    """The first TRAIN_COUNT digits as `<folder>/<label>/<index>.png`; returns the folder."""
    if (folder / ".complete").exists():
        return folder
    pngs, labels = _digits()
    for index in range(TRAIN_COUNT):
        target = folder / labels[index] / f"{index:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(pngs[index])
    (folder / ".complete").touch()
    return folder


@dataclass(frozen=True)
class DailyImages:
    """What `upload_daily_images` put where: the dates, and each path's true label (broken ones: None)."""

    dates: list[dt.date]
    labels: dict[str, str | None]


def upload_daily_images(
    store: ObjectStore, root: str, manifest_uri: str, last_date: dt.date, per_date: int = 100
) -> DailyImages:
    """Unseen digits for the three days up to `last_date` under `root`, and the metadata CSV;
    the broken files go into the first day. Uploads only what is missing."""
    if store.exists(manifest_uri):
        known = list(csv.DictReader(io.StringIO(store.read(manifest_uri).decode())))
        return DailyImages(
            sorted({dt.date.fromisoformat(r["date"]) for r in known}),
            {r["filepath"]: r["label"] or None for r in known},
        )
    pngs, labels = _digits()
    unseen = list(range(TRAIN_COUNT, len(pngs)))
    per_date = max(1, min(per_date, len(unseen) // 3))
    dates = [last_date - dt.timedelta(days=n) for n in (2, 1, 0)]
    rows: list[dict[str, str]] = []
    for day, date in enumerate(dates):
        for index in unseen[day * per_date : (day + 1) * per_date]:
            path = f"{date}/digit-{index:04d}.png"
            store.write(root + path, pngs[index], content_type="image/png")
            rows.append({"filepath": path, "date": date.isoformat(), "label": labels[index]})
    broken = {
        "truncated.png": pngs[unseen[0]][: len(pngs[unseen[0]]) // 2],
        "not-an-image.png": b"this is a text file, not an image\n",
        "empty.png": b"",
    }
    for name, body in broken.items():
        store.write(f"{root}{dates[0]}/{name}", body, content_type="image/png")
    for name in BROKEN:
        rows.append({"filepath": f"{dates[0]}/{name}", "date": dates[0].isoformat(), "label": ""})
    out = io.StringIO()
    writer = csv.DictWriter(out, ["filepath", "date", "label"])
    writer.writeheader()
    writer.writerows(rows)
    store.write(manifest_uri, out.getvalue().encode(), content_type="text/csv")
    return DailyImages(dates, {r["filepath"]: r["label"] or None for r in rows})
