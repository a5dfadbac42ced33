"""`make demo`: the platform's main job on one machine, from nothing to results.

It starts the local stack (S3, Redis, the predictor, the gateway), trains and publishes the digits
model if none is exported yet, uploads three days of unseen digits with the metadata CSV (a few files
broken on purpose), then, as the admin, through the REST API: classifies one image, makes the daily
schedule from the day before the first (a day without images) with catch-up, fires it as its cron
would until every day up to yesterday is done (the empty day done at once, each day's run with its
progress shown), and prints its next date, where its cumulative results are, their first rows, the
accuracy against the known labels and the rows of the broken files. Everything it started is
stopped at the end, unless `keep` (or the stack was already up).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
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
    say(
        f"· {len(samples.labels)} images for {', '.join(map(str, samples.dates))} in {ROOT}"
        f" with {stack.MANIFEST['uri']} ({len(sample_data.BROKEN)} broken on purpose)"
    )
    url = running.gateway_url
    with Gateway(url, username=stack.ADMIN, password=running.admin_password) as gateway:
        say(f"\n1. One image through the REST API (POST {url}/v1/classify)")
        image = samples.files[0]
        sample = f"{samples.dates[0]}/{image.name}"
        answer = gateway.classify(str(image))
        top = ", ".join(f"{t['label']} {t['score']:.2f}" for t in answer["top_k"])
        say(
            f"   {sample} (truly {samples.labels[sample]}) → {answer['label']} ({answer['score']:.3f});"
            f" top-k: {top}"
        )
        balance, needed = gateway.credits()["credits"], len(samples.labels)
        if balance < needed:  # an earlier demo on this stack spent them: the admin refills itself
            gateway.refill(stack.ADMIN, needed - balance)
            say(f"   (refilled {needed - balance} credits: POST {url}/v1/admin/credits/{stack.ADMIN})")
        start = samples.dates[0] - dt.timedelta(days=1)  # a day with no images: done at once
        schedule = gateway.create_schedule(cron=CRON, start_date=start.isoformat(), catch_up=True)
        name = schedule["name"]
        say(
            f"\n2. The daily batch: schedule {name}, cron '{CRON}' UTC, from {start}, catching up day by day"
            f"\n   (POST {url}/v1/schedules; each firing, POST {url}/v1/schedules/{name}/fire, does what"
            " the cron does at its time: the next date)"
        )
        ended = _fire_until_done(gateway, name, say)
        schedule = gateway.schedule(name)
        say(
            f"   Every day up to yesterday is done (last date {schedule['last_date']}); the next firing,"
            f" {schedule['next_run']}, takes {schedule['next_date']}."
        )
        rows = list(csv.DictReader(io.StringIO(b"".join(gateway.schedule_results_csv(name)).decode())))
        code = _report(ended, rows, samples.labels, url, name, say)
        balance = gateway.credits()["credits"]
    say(f"\n   {balance} credits left for {stack.ADMIN}.")
    return code


CRON = "30 1 * * *"


def _fire_until_done(gateway: Gateway, name: str, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Fire the schedule until no date is due, following each run; each run's end."""
    from kubeclassify.cli.client import GatewayError

    ended: list[dict[str, Any]] = []
    while True:
        try:
            fired = gateway.fire_schedule(name)
        except GatewayError as e:
            if e.status == 409 and "nothing is due" in str(e):
                return ended
            raise
        if fired["batch"] is None:
            say(f"   {fired['date']}: no images, done")
            continue
        info = gateway.wait_for_batch(fired["batch"], every=0.5, on_progress=batch_progress(sys.stdout))
        counts = info["counts"]
        done = f"{counts['classified']} classified, {counts['failed']} failed"
        say(f"   {fired['date']}: {info['state']}, {done}")
        ended.append(info)
        if info["state"] != "Succeeded":
            return ended


def _report(
    ended: list[dict[str, Any]],
    rows: list[dict[str, str]],
    labels: dict[str, str | None],
    url: str,
    name: str,
    say: Callable[[str], None],
) -> int:
    say(f"\n   All its results, one CSV: {url}/v1/schedules/{name}/results.csv ({len(rows)} rows)")
    say(f"   (or: kubeclassify schedules results {name} --file results.csv)")
    for row in rows:
        row["path"] = row["source"].removeprefix(ROOT)
    say("\n   The first rows:")
    shown = [{**r, "score": r["score"] and f"{float(r['score']):.3f}"} for r in rows[:5]]  # for people
    table(shown, ["path", "date", "label", "score", "input_label", "error"], indent="   ")
    truth = {r["path"]: labels.get(r["path"]) for r in rows}
    scored = [r for r in rows if not r["error"] and truth[r["path"]] is not None]
    right = sum(1 for r in scored if r["label"] == truth[r["path"]])
    if scored:
        say(f"\n   Accuracy on {len(scored)} digits the model never saw: {right / len(scored):.1%}")
    errors = [r for r in rows if r["error"]]
    say(f"\n   Rows with an error ({len(errors)}; each file is still a row, nothing is lost):")
    table(errors, ["path", "error"], indent="   ")
    whole = sorted(truth) == sorted(labels)
    succeeded = bool(ended) and all(info["state"] == "Succeeded" for info in ended)
    return 0 if succeeded and whole and scored else 1
