"""`make demo` and the CLI, as a person runs them: the demo script (shortened: fewer images, fewer
training epochs) from an empty home, then the CLI's stack and gateway commands against the stack it
left up, then `down`, after which nothing it started is running."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from harness import clock
from harness.readme import commands

from kubeclassify.cli import stack
from kubeclassify.core.model_card import ModelCard
from kubeclassify.core.resources import ImageInputSpec, ModelDeployment

# Fewer epochs; 80 images a day, so that the first day's four broken files stay under the 5% of
# failures a batch allows by default.
SHORT = ["--images-per-day", "80", "--epochs", "3"]


def kubeclassify(home: Path | None, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI as a person runs it (with `--home` when given), none of this process's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECLASSIFY_") or k == clock.ENV}
    return subprocess.run(
        [sys.executable, "-m", "kubeclassify.core.cli", *args, *(["--home", str(home)] if home else [])],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    """The demo, kept up afterwards (`make up`); stopped with `kubeclassify down` at the end."""
    home = tmp_path_factory.mktemp("home")
    done = kubeclassify(home, "demo", "--keep", *SHORT, timeout=600)
    yield home, done
    kubeclassify(home, "down")


@pytest.mark.calendar  # the sample images are dated yesterday and the two days before
def test_the_demo_walks_a_schedule_through_the_days_and_shows_the_broken_files(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, done = demo
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "training the digits model" in out
    assert "1. One image through the REST API" in out and "→" in out
    today = dt.date.today()
    days = [today - dt.timedelta(days=n) for n in (4, 3, 2, 1)]
    walked = [line.strip() for line in out.splitlines() if re.match(r"\s+\d{4}-\d\d-\d\d: ", line)]
    assert walked == [
        f"{days[0]}: no images, done",
        f"{days[1]}: Succeeded, 80 classified, 4 failed",
        f"{days[2]}: Succeeded, 80 classified, 0 failed",
        f"{days[3]}: Succeeded, 80 classified, 0 failed",
    ], out
    assert f"Every day up to yesterday is done (last date {days[3]}); the next firing" in out
    assert f"takes {today}." in out
    assert "results.csv (244 rows)" in out
    assert "Accuracy on 240 digits the model never saw:" in out
    demo_schedule = json.loads(kubeclassify(home, "schedules", "list", "-o", "json").stdout)[0]["name"]
    again = kubeclassify(home, "schedules", "fire", demo_schedule)
    assert again.returncode == 2 and "nothing is due" in again.stderr
    for name in ("truncated.png", "not-an-image.png", "empty.png", "never-uploaded.png"):
        assert name in out.split("Rows with an error (4;", 1)[1]
    assert "/docs" in out and "keeps running" in out


@pytest.mark.calendar
def test_the_cli_against_the_stack(
    demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    home, _ = demo
    status = kubeclassify(home, "status", "--output", "json")
    assert status.returncode == 0 and set(json.loads(status.stdout)) == {
        "s3",
        "redis",
        "predictor",
        "gateway",
    }

    image = next((home / stack.SAMPLES).glob("*.png"))
    classified = kubeclassify(home, "classify", str(image), "-o", "json")
    assert classified.returncode == 0, classified.stderr
    label = json.loads(classified.stdout)["label"]
    assert label.isdigit() and len(json.loads(classified.stdout)["top_k"]) == 5

    assert json.loads(kubeclassify(home, "models", "-o", "json").stdout)[0]["name"] == "digits"
    images = json.loads(kubeclassify(home, "images", "--category", label, "-o", "json").stdout)
    assert images["items"] and all(i["label"] == label for i in images["items"])
    credits = json.loads(kubeclassify(home, "credits", "-o", "json").stdout)["credits"]

    day = sorted(d for d in {r.split("/")[0] for r in _manifest_paths(home)})[1]
    submitted = kubeclassify(home, "batch", "submit", "--date", day, "--wait", "-o", "json", timeout=300)
    assert submitted.returncode == 0, submitted.stderr
    batch = json.loads(submitted.stdout)
    assert batch["state"] == "Succeeded" and batch["counts"]["classified"] == 80
    results = tmp_path / "results.csv"
    assert kubeclassify(home, "batch", "results", batch["name"], "--file", str(results)).returncode == 0
    rows = list(csv.DictReader(io.StringIO(results.read_text())))
    assert len(rows) == 80 and all(r["source"].startswith(f"s3://incoming/{day}/") for r in rows)
    assert json.loads(kubeclassify(home, "credits", "-o", "json").stdout)["credits"] == credits - 80
    top = rows[0]["label"]
    only = tmp_path / "only.csv"
    assert (
        kubeclassify(home, "batch", "results", batch["name"], "--label", top, "-f", str(only)).returncode == 0
    )
    assert list(csv.DictReader(io.StringIO(only.read_text()))) == [r for r in rows if r["label"] == top]
    batches = json.loads(kubeclassify(home, "batch", "list", "-o", "json").stdout)
    assert batch["name"] in {b["name"] for b in batches["items"]}
    assert batch["name"] in kubeclassify(home, "batch", "list").stdout
    assert kubeclassify(home, "batch", "delete", batch["name"]).returncode == 0
    deleted = kubeclassify(home, "batch", "status", batch["name"])
    assert deleted.returncode == 2 and "no batch" in deleted.stderr
    ended = kubeclassify(home, "batch", "cancel", batch["name"])
    assert ended.returncode == 2 and "no batch" in ended.stderr

    assert json.loads(kubeclassify(home, "categories", "-o", "json").stdout)[label] >= 1
    shown = kubeclassify(home, "images", "--limit", "5").stdout
    assert re.search(r"\b[01]\.\d{3}\b", shown) and not re.search(r"\b0\.\d{4,}", shown), "scores rounded"
    first = json.loads(kubeclassify(home, "images", "--limit", "1", "-o", "json").stdout)
    second = json.loads(kubeclassify(home, "images", "--limit", "1", "--offset", "1", "-o", "json").stdout)
    assert first["total"] >= 2 and first["items"][0]["uid"] != second["items"][0]["uid"]
    copy = tmp_path / "copy.png"
    uid = json.loads(classified.stdout)["uid"]
    assert kubeclassify(home, "images", "get", uid, "--file", str(copy)).returncode == 0
    assert copy.read_bytes() == image.read_bytes()
    assert kubeclassify(home, "images", "delete", uid).returncode == 0
    assert kubeclassify(home, "images", "get", uid, "--file", str(copy)).returncode == 2
    made = json.loads(kubeclassify(home, "keys", "create", "for-ci", "-o", "json").stdout)
    assert made["key"].startswith("kc_")
    listed = json.loads(kubeclassify(home, "keys", "list", "-o", "json").stdout)
    assert made["id"] in {k["id"] for k in listed}
    assert kubeclassify(home, "credits", "--api-key", made["key"]).returncode == 0
    assert kubeclassify(home, "keys", "revoke", made["id"]).returncode == 0
    assert kubeclassify(home, "credits", "--api-key", made["key"]).returncode == 2, "revoked at once"
    unknown = kubeclassify(home, "keys", "revoke", "000000000000")
    assert unknown.returncode == 2 and "no key" in unknown.stderr
    refill = kubeclassify(home, "admin", "refill", "admin", "--amount", "7", "-o", "json")
    assert refill.returncode == 0, refill.stderr
    refilled = json.loads(refill.stdout)
    assert refilled["credits"] == credits - 80 + 7
    balances = json.loads(kubeclassify(home, "admin", "credits", "-o", "json").stdout)
    assert {"username": "admin", "credits": credits - 80 + 7} in balances

    created = kubeclassify(
        home, "schedules", "create", "--cron", "0 3 * * *", "--start-date", day, "-o", "json"
    )
    assert created.returncode == 0, created.stderr
    schedule = json.loads(created.stdout)["name"]
    listed_schedules = json.loads(kubeclassify(home, "schedules", "list", "-o", "json").stdout)
    assert schedule in {s["name"] for s in listed_schedules}
    ran = kubeclassify(home, "schedules", "run", schedule, "--date", day, "-o", "name")
    assert ran.returncode == 0, ran.stderr
    waited = kubeclassify(home, "batch", "status", ran.stdout.strip(), "--wait", "-o", "json", timeout=300)
    assert json.loads(waited.stdout)["state"] == "Succeeded", waited.stdout + waited.stderr
    merged = tmp_path / "schedule.csv"
    assert kubeclassify(home, "schedules", "results", schedule, "--file", str(merged)).returncode == 0
    merged_rows = list(csv.DictReader(io.StringIO(merged.read_text())))
    assert len(merged_rows) == 80 and {r["date"] for r in merged_rows} == {day}
    before = json.loads(kubeclassify(home, "schedules", "show", schedule, "-o", "json").stdout)
    edited = kubeclassify(
        home, "schedules", "edit", schedule, "--cron", "30 4 * * *", "--catch-up", "-o", "json"
    )
    assert edited.returncode == 0, edited.stderr
    changed = json.loads(edited.stdout)
    assert (changed["cron"], changed["catch_up"]) == ("30 4 * * *", True)
    assert changed["last_date"] == before["last_date"], "the dates done stay done"
    assert dt.datetime.fromisoformat(changed["next_run"]).astimezone(dt.UTC).time() == dt.time(4, 30)
    nothing = kubeclassify(home, "schedules", "edit", schedule)
    assert nothing.returncode == 2 and "say what to change" in nothing.stderr
    paused = json.loads(kubeclassify(home, "schedules", "pause", schedule, "-o", "json").stdout)
    resumed = json.loads(kubeclassify(home, "schedules", "resume", schedule, "-o", "json").stdout)
    assert paused["paused"] is True and resumed["paused"] is False
    assert kubeclassify(home, "schedules", "delete", schedule).returncode == 0
    gone = kubeclassify(home, "schedules", "show", schedule)
    assert gone.returncode == 2 and "no schedule" in gone.stderr


def test_cli_errors_say_what_went_wrong_with_meaningful_exit_codes(
    demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    home, _ = demo
    text = tmp_path / "note.png"
    text.write_text("not an image")
    refused = kubeclassify(home, "classify", str(text))
    assert refused.returncode == 2 and "not an image" in refused.stderr
    private = kubeclassify(home, "classify", "http://169.254.169.254/latest/meta-data")
    assert private.returncode == 2 and "not a public address" in private.stderr
    missing = kubeclassify(home, "batch", "status", "admin-00000000")
    assert missing.returncode == 2
    unreachable = kubeclassify(home, "credits", "--gateway", "http://127.0.0.1:9", "--api-key", "kc_x")
    assert unreachable.returncode == 4 and "cannot reach the gateway" in unreachable.stderr
    assert kubeclassify(home, "classify", str(tmp_path / "absent.png")).returncode == 2
    bad_date = kubeclassify(home, "batch", "submit", "--date", "2026-13-40")
    assert bad_date.returncode == 2 and "date" in bad_date.stderr


@pytest.mark.calendar  # `up` prints the sample days, which follow the calendar
def test_up_prints_what_to_paste_and_the_readme_commands_run_as_written(
    demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    home, _ = demo
    done = kubeclassify(home, "up")  # already up: it only says so, with the variables to paste
    assert done.returncode == 0, done.stdout + done.stderr
    env_file = home / stack.ENV_FILE
    assert f". {env_file}" in done.stdout and oct(env_file.stat().st_mode & 0o777) == "0o600"
    recorded = stack.Stack.load(home)
    assert recorded is not None
    for name in ("GATEWAY", "PREDICTOR", "PASSWORD", "SAMPLE", "DAY1", "DAY2", "DAY3", "TOKEN"):
        assert f"\n{name}=" in done.stdout, name
    assert f"PASSWORD={recorded.admin_password}" in done.stdout  # token_urlsafe: nothing to quote
    assert "make down" not in done.stdout  # a home of its own: `kubeclassify down --home` stops it
    day1 = (dt.date.today() - dt.timedelta(days=3)).isoformat()
    assert f"DAY1={day1}" in done.stdout and f"DAY3={(dt.date.today() - dt.timedelta(days=1))}" in done.stdout

    # Every line of the READMEs' blocks that use those variables, in order, in one shell: as written,
    # with .venv/bin/kubeclassify this environment's and curl failing on an error status.
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    script = ["set -u", f". {shlex.quote(str(env_file))}"]
    ran = []
    for command in (c for c in commands() if c.live):
        line = command.line
        if line.startswith("make "):  # the stack is the fixture's: `up` and `down` are run above and after
            continue
        if line == ". .local/stack/env.sh":
            continue  # the fixture's home is not .local/stack: sourced above
        line = re.sub(r"(^|\$\(|\s)curl ", r"\1curl --fail-with-body ", line)
        script.append(f"{line} >> commands.log 2>&1 || {{ echo {shlex.quote('FAILED: ' + line)}; exit 1; }}")
        ran.append(line)
    assert any("kubeclassify batch submit" in line for line in ran) and any(
        "$PREDICTOR" in line for line in ran
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECLASSIFY_") or k == clock.ENV}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    shell = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    log = (tmp_path / "commands.log").read_text() if (tmp_path / "commands.log").exists() else ""
    assert shell.returncode == 0, shell.stdout + shell.stderr + log[-3000:]
    results = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert results and all(r["label"] or r["error"] for r in results)
    assert '"username":"alice"' in log.replace(" ", "")  # the gateway section's account, signed in


def test_down_stops_everything(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    home, _ = demo
    recorded = stack.Stack.load(home)
    assert recorded is not None and recorded.services
    pids = [s.pid for s in recorded.services.values()]
    done = kubeclassify(home, "down")
    assert done.returncode == 0 and "stopped gateway" in done.stdout
    assert not any(stack.alive(pid) for pid in pids)
    assert kubeclassify(home, "status").returncode == 1


def test_a_second_demo_reuses_the_model_and_leaves_nothing_running(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    home, _ = demo
    kubeclassify(home, "down")
    done = kubeclassify(home, "demo", *SHORT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "training" not in done.stdout and "Stopped everything the demo started" in done.stdout
    running = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True)
    assert running.stdout == "", running.stdout


def _manifest_paths(home: Path) -> list[str]:
    from kubeclassify.core.storage import ObjectStore

    recorded = stack.Stack.load(home)
    assert recorded is not None
    text = ObjectStore(recorded.s3_settings()).read(stack.MANIFEST["uri"]).decode()
    return [r["filepath"] for r in csv.DictReader(io.StringIO(text))]


def test_a_trained_model_is_served_and_described_without_copying_by_hand(
    demo: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    home, _ = demo
    model = tmp_path / "digits-v2"  # the demo's export under another name, as a second training would be
    shutil.copytree(home / "models" / "digits", model)
    card = json.loads((model / "model-card.json").read_text())
    (model / "model-card.json").write_text(json.dumps({**card, "name": "digits-v2"}))

    printed = kubeclassify(None, "model", "deployment", str(model), "--uri", "s3://models/digits-v2/")
    assert printed.returncode == 0, printed.stderr
    resource = yaml.safe_load(printed.stdout)
    ModelDeployment.model_validate(resource)
    assert resource["metadata"]["name"] == "digits-v2"
    assert resource["spec"]["model"] == {**resource["spec"]["model"], "uri": "s3://models/digits-v2/"}
    assert resource["spec"]["model"]["version"] == card["version"]
    assert ImageInputSpec.model_validate(resource["spec"]["input"]) == ModelCard.model_validate(card).input
    missing = kubeclassify(None, "model", "deployment", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no model card" in missing.stderr and "Traceback" not in missing.stderr

    other = tmp_path / "home"
    up = kubeclassify(other, "up", "--model", str(model), timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "\nMODEL=digits-v2\n" in up.stdout
        models = json.loads(kubeclassify(other, "models", "-o", "json").stdout)
        assert [(m["name"], m["default"], m["ready"]) for m in models] == [("digits-v2", True, True)]
        sample = next((other / stack.SAMPLES).glob("*.png"))
        classified = kubeclassify(other, "classify", str(sample), "-o", "json")
        assert classified.returncode == 0 and json.loads(classified.stdout)["model_name"] == "digits-v2"
    finally:
        kubeclassify(other, "down")
    assert kubeclassify(other, "up", "--model", str(tmp_path / "nothing")).returncode == 2
