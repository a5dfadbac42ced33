"""Draw benchmarks/results/batch.png from batch.json: for each model, the batch worker's images/s
against the model-only limit and the seed-style loop, measured in one run on one machine."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

RESULTS = Path(__file__).resolve().parent / "results"
BARS = (
    ("model_only", "model alone, at its best", "#9e9e9e"),
    ("worker", "batch worker", "#1565c0"),
    ("seed_loop", "seed-style loop", "#ef6c00"),
)
WIDTH, LABEL, ROW, PAD = 760, 170, 22, 12


def main() -> None:
    results = json.loads((RESULTS / "batch.json").read_text())
    models = [m for m in ("mobilenetv2", "resnet50v2") if m in results]
    height = PAD * 3 + 18 + len(models) * (len(BARS) * ROW + 2 * PAD) + 10
    image = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text(
        (PAD, PAD),
        f"Batch images per second on {results['cpus']} cores, {results['images']} JPEGs, 224x224"
        " (make bench-batch)",
        fill="black",
        font=font,
    )
    y = PAD * 2 + 18
    for model in models:
        figures = results[model]
        top = max(figures[key] for key, _, _ in BARS)
        ratio = figures["worker_over_model_only"]
        draw.text((PAD, y), f"{model}: worker = {ratio:.2f} x model-only", fill="black", font=font)
        y += PAD + 4
        for key, name, colour in BARS:
            value = figures[key]
            length = int((WIDTH - LABEL - 90) * value / top)
            draw.text((PAD, y + 4), name, fill="black", font=font)
            draw.rectangle((LABEL, y, LABEL + length, y + ROW - 6), fill=colour)
            draw.text((LABEL + length + 6, y + 4), f"{value:.1f}/s", fill="black", font=font)
            y += ROW
        y += PAD
    image.save(RESULTS / "batch.png")
    print(f"wrote {RESULTS / 'batch.png'}")


if __name__ == "__main__":
    main()
