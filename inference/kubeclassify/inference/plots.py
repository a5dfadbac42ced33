"""PNG pictures made with Pillow: sample images per class, and a confusion matrix."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_CELL = 56
_PAD = 4


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def sample_grid(images: np.ndarray, labels: np.ndarray, classes: list[str], per_class: int = 10) -> bytes:
    """One row per class: its name, then up to `per_class` of its images."""
    font = ImageFont.load_default()
    name_width = max(8 * max(len(c) for c in classes), 60)
    width = name_width + per_class * (_CELL + _PAD) + _PAD
    height = len(classes) * (_CELL + _PAD) + _PAD
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    for row, name in enumerate(classes):
        y = _PAD + row * (_CELL + _PAD)
        draw.text((_PAD, y + _CELL // 2 - 6), name, fill="black", font=font)
        for col, index in enumerate(np.flatnonzero(labels == row)[:per_class]):
            img = images[index]
            tile = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
            tile = tile.convert("RGB").resize((_CELL, _CELL), Image.Resampling.NEAREST)
            grid.paste(tile, (name_width + col * (_CELL + _PAD), y))
    return _png(grid)


def confusion_matrix_png(matrix: list[list[int]], classes: list[str]) -> bytes:
    """Rows are true classes, columns predicted ones; darker cells hold more images."""
    font = ImageFont.load_default()
    n = len(classes)
    label_width = max(8 * max(len(c) for c in classes), 40)
    cell = 36
    size = (label_width + n * cell + _PAD, label_width + n * cell + _PAD + 16)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((label_width, 2), "predicted ->", fill="black", font=font)
    peak = max(max(row) for row in matrix) or 1
    for i, name in enumerate(classes):
        draw.text((_PAD, 16 + label_width + i * cell + cell // 2 - 6), name[:24], fill="black", font=font)
        draw.text((label_width + i * cell + 2, 16 + label_width - 14), name[:4], fill="black", font=font)
        for j in range(n):
            value = matrix[i][j]
            shade = int(255 - 200 * value / peak)
            color = (shade, shade, 255) if i == j else (255, shade, shade)
            x0, y0 = label_width + j * cell, 16 + label_width + i * cell
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=color, outline="gray")
            draw.text((x0 + 4, y0 + cell // 2 - 6), str(value), fill="black", font=font)
    return _png(image)
