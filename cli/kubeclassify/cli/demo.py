"""`make demo`: the platform's main job on one machine, from nothing to results.

It starts the local stack (S3, Redis, the predictor, the gateway), trains and publishes the digits
model if none is exported yet, uploads three days of unseen digits with the metadata CSV (a few files
broken on purpose), then, as the admin, through the REST API: classifies one image, runs the daily
batch for the first day with its progress shown, and prints where the results are, their first rows,
the accuracy against the known labels and the rows of the broken files. Everything it started is
stopped at the end, unless `keep` (or the stack was already up).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubeclassify.cli import sample_data, stack
from kubeclassify.cli.client import Gateway
from kubeclassify.cli.console import batch_progress, table

ROOT = stack.MANIFEST["root"]


def run(
    home: Path,
    keep: bool = False,
    per_date: int = 100,
    gateway_port: int | None = None,
    train_args: tuple[str, ...] = (),
    say: Callable[[str], None] = print,
) -> int:
    """The demo; 0 when the batch succeeded and its rows are the images of that day."""
    found = stack.status(home)
    already = bool(found) and all(s["healthy"] for s in found.values())
    running = stack.up(home, gateway_port, say=lambda m: say(f"· {m}"), train_args=train_args)
    try:
        return _walk_through(running, per_date, say)
    finally:
        if keep or already:
            url = running.gateway_url
            say(
                f"\nThe stack keeps running: the web page at {url}/ and the API docs at {url}/docs (user"
                f" {stack.ADMIN}, password {running.admin_password});"
                f" `kubeclassify down --home {home}` stops it."
            )
        else:
            stack.down(home, say=lambda _: None)
            say(
                "\nStopped everything the demo started. `make up` starts the same stack and keeps it running,"
                " with the web page, the API docs and the CLI."
            )


def _walk_through(running: stack.Stack, per_date: int, say: Callable[[str], None]) -> int:
    samples = stack.prepare_samples(running, per_date)
    day = samples.dates[0]
    on_day = [p for p in samples.labels if p.startswith(f"{day}/")]
    say(
        f"· {len(samples.labels)} images for {', '.join(map(str, samples.dates))} in {ROOT}"
        f" with {stack.MANIFEST['uri']} ({len(sample_data.BROKEN)} broken on purpose)"
    )
    url = running.gateway_url
    with Gateway(url, username=stack.ADMIN, password=running.admin_password) as gateway:
        say(f"\n1. One image through the REST API (POST {url}/v1/classify)")
        image = samples.files[0]
        sample = f"{day}/{image.name}"
        answer = gateway.classify(str(image))
        top = ", ".join(f"{t['label']} {t['score']:.2f}" for t in answer["top_k"])
        say(
            f"   {sample} (truly {samples.labels[sample]}) → {answer['label']} ({answer['score']:.3f});"
            f" top-k: {top}"
        )

        say(f"\n2. The daily batch for {day} (POST {url}/v1/batches, date={day})")
        started = gateway.submit_batch(date=day.isoformat())
        info = gateway.wait_for_batch(started["name"], every=0.5, on_progress=batch_progress(sys.stdout))
        rows = gateway.results(info["name"])
        code = _report(info, rows, samples.labels, on_day, url, say)
        balance = gateway.credits()["credits"]
    say(f"\n   {balance} credits left for {stack.ADMIN}.")
    return code


def _report(
    info: dict[str, Any],
    rows: list[dict[str, Any]],
    labels: dict[str, str | None],
    on_day: list[str],
    url: str,
    say: Callable[[str], None],
) -> int:
    name, counts = info["name"], info["counts"]
    say(f"   {info['state']}: {counts['classified']} classified, {counts['failed']} failed, {len(rows)} rows")
    say(f"   results: {url}/v1/batches/{name}/results.csv  (or: kubeclassify batch results {name})")
    for row in rows:  # the typed rows of GET /v1/batches/{name}/results
        row["path"] = row["source"].removeprefix(ROOT)
        row["input_label"] = row["extra"].get("input_label")
    say("\n   The first rows:")
    table(rows[:5], ["path", "label", "score", "input_label", "error"], indent="   ")
    truth = {r["path"]: labels.get(r["path"]) for r in rows}
    scored = [r for r in rows if not r["error"] and truth[r["path"]] is not None]
    right = sum(1 for r in scored if r["label"] == truth[r["path"]])
    if scored:
        say(f"\n   Accuracy on {len(scored)} digits the model never saw: {right / len(scored):.1%}")
    errors = [r for r in rows if r["error"]]
    say(f"\n   Rows with an error ({len(errors)}; each file is still a row, nothing is lost):")
    table(errors, ["path", "error"], indent="   ")
    whole = sorted(truth) == sorted(on_day)
    return 0 if info["state"] == "Succeeded" and whole and scored else 1
