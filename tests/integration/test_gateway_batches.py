"""CSV batches through the gateway with the local backend, end to end: real Redis, SeaweedFS, the
digits predictor, and the batch worker as a process. Credits reserved and settled, results as JSON
and CSV, a signed webhook checked by a local receiver, a restart mid-batch, and bad inputs."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from harness.gateway import (
    Site,
    digit_png,
    local_settings,
    predicted_label,
    sign_up,
)
from harness.wait import wait_for
from pydantic import SecretStr

from kubeclassify.cli.processes import free_port
from kubeclassify.cli.services import PredictorServer, RedisServer, start_redis
from kubeclassify.core.resources.classification_batch import ManifestInput
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore
from kubeclassify.core.webhooks import SIGNATURE_HEADER, verify
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.config import GatewaySettings
from kubeclassify.gateway.local_batches import SecondReplica
from kubeclassify.gateway.security import hash_password

DIGITS = range(1760, 1766)

# The daily manifest's days follow the calendar, since schedules read the clock: one image three days
# ago, none the day after, two yesterday (the schedule's zone, UTC, is the one these are counted in).
TODAY = dt.datetime.now(dt.UTC).date()
DAY1, EMPTY, DAY3 = ((TODAY - dt.timedelta(days=n)).isoformat() for n in (3, 2, 1))


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.server.shutdown()


@pytest.fixture
def settings(
    redis_server: RedisServer, s3_settings: S3Settings, bucket: str, digits_predictor: PredictorServer
) -> GatewaySettings:
    return local_settings(
        redis_server,
        s3_settings,
        bucket,
        digits_predictor,
        fetch_allowed_networks=["127.0.0.0/8"],
        max_batch_rows=12,
    )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def submit(client: TestClient, token: str, body: bytes, **form: str) -> Any:
    return client.post(
        "/v1/batches", files={"file": ("batch.csv", body, "text/csv")}, data=form, headers=auth(token)
    )


def wait_done(client: TestClient, token: str, name: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        info: dict[str, Any] = client.get(f"/v1/batches/{name}", headers=auth(token)).json()
        return info if info["state"] in ("Succeeded", "Failed") else None

    done: dict[str, Any] = wait_for(ended, timeout=120, what=f"batch {name} to end")
    return done


def test_a_url_batch_is_classified_paid_for_and_announced(
    settings: GatewaySettings, site: Site, digits_predictor: PredictorServer
) -> None:
    with TestClient(create_app(settings)) as client:
        token = sign_up(client)
        secret = client.post("/v1/webhook-secret", headers=auth(token)).json()["secret"]
        names = [f"{i}.png" for i in DIGITS] + ["missing.png", "text.png"]
        created = submit(
            client, token, site.csv(names), webhook_url=f"{site.url}/hook", max_failed_fraction="0.5"
        )
        assert created.status_code == 201, created.text
        batch = created.json()
        assert batch["name"].startswith("alice-") and batch["reserved"] == len(names)
        assert client.get("/v1/credits", headers=auth(token)).json()["credits"] == 20 - len(names)

        done = wait_done(client, token, batch["name"])
        assert done["state"] == "Succeeded", done
        assert done["counts"] == {"total": 8, "classified": 6, "failed": 2, "skipped": 0, "unadmitted": None}
        # the two unreadable images are given back; settling again gives nothing more
        assert client.get("/v1/credits", headers=auth(token)).json()["credits"] == 20 - 6

        page = client.get(f"/v1/batches/{batch['name']}/results?limit=5", headers=auth(token)).json()
        assert len(page["rows"]) == 5 and page["more"]
        rest = client.get(f"/v1/batches/{batch['name']}/results?offset=5", headers=auth(token)).json()
        rows = page["rows"] + rest["rows"]
        assert not rest["more"] and len(rows) == 8
        by_source = {r["source"]: r for r in rows}
        for i in DIGITS:
            row = by_source[f"{site.url}/{i}.png"]
            assert row["label"] == predicted_label(digits_predictor, digit_png(i)[0]) and not row["error"]
        assert by_source[f"{site.url}/missing.png"]["error"]
        assert by_source[f"{site.url}/text.png"]["error"]

        streamed = client.get(f"/v1/batches/{batch['name']}/results.csv", headers=auth(token))
        assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/csv")
        assert len(list(csv.DictReader(io.StringIO(streamed.text)))) == 8

        listed = client.get("/v1/batches", headers=auth(token)).json()
        assert [b["name"] for b in listed["items"]] == [batch["name"]]

        headers, body = wait_for(lambda: site.hooks, what="the webhook")[0]
        assert verify(secret.encode(), headers[SIGNATURE_HEADER], body)
        assert not verify(b"another secret", headers[SIGNATURE_HEADER], body)
        hook = json.loads(body)
        assert hook["batch"] == batch["name"] and hook["state"] == "Succeeded"
        assert hook["counts"]["classified"] == 6
        assert wait_done(client, token, batch["name"])["webhook_delivered"] is True


def test_a_batch_whose_images_all_fail_fails_and_says_why(settings: GatewaySettings, site: Site) -> None:
    with TestClient(create_app(settings)) as client:
        token = sign_up(client)
        created = submit(client, token, site.csv(["missing.png", "text.png", f"{DIGITS[0]}.png"]))
        assert created.status_code == 201, created.text
        done = wait_done(client, token, created.json()["name"])
        # the default share of failures a batch allows is the ClassificationBatch's (5%)
        assert done["state"] == "Failed", done
        assert done["message"].startswith("2 of 3 images failed (67%), more than the 5% this batch allows")
        assert done["counts"] == {"total": 3, "classified": 1, "failed": 2, "skipped": 0, "unadmitted": None}
        assert client.get("/v1/credits", headers=auth(token)).json()["credits"] == 20 - 1
        rows = client.get(f"/v1/batches/{done['name']}/results", headers=auth(token)).json()["rows"]
        assert len(rows) == 3 and sum(1 for r in rows if r["error"]) == 2  # published all the same

        refused = submit(client, token, site.csv(["text.png"]), max_failed_fraction="1.5")
        assert refused.status_code == 422 and "max_failed_fraction" in refused.text


def test_a_path_batch_reads_my_own_images(
    settings: GatewaySettings, digits_predictor: PredictorServer
) -> None:
    with TestClient(create_app(settings)) as client:
        token = sign_up(client)
        png = digit_png(1770)[0]
        label = predicted_label(digits_predictor, png)
        uid = client.post(
            "/v1/classify", files={"file": ("d.png", png, "image/png")}, headers=auth(token)
        ).json()["uid"]
        path = client.get(f"/v1/images/{uid}", headers=auth(token)).json()["path"]
        assert path == f"{uid}.png"  # what a path column takes, as the image's record gives it
        created = submit(client, token, f"path\n{path}\nnot-there.png\n".encode(), max_failed_fraction="0.5")
        assert created.status_code == 201, created.text
        done = wait_done(client, token, created.json()["name"])
        assert done["counts"]["classified"] == 1 and done["counts"]["failed"] == 1
        rows = client.get(f"/v1/batches/{done['name']}/results", headers=auth(token)).json()["rows"]
        assert [r["label"] for r in rows if not r["error"]] == [label]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"image,label\nhttp://example.com/a.png,1\n", 422, "exactly one of the columns url or path"),
        (b"", 422, "it has none"),
        (b"url\n", 422, "no rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", 422, "binary"),
        (b"url\nhttp://example.com/\xff\xfe.png\n", 422, "UTF-8"),
        (b"url,note\nhttp://example.com/a.png,=HYPERLINK(1)\n", 422, "formulas are refused"),
        (b"url\nfile:///etc/passwd\n", 422, "not an http(s) URL"),
        (b"path\n../bob/secret.png\n", 422, "outside your images"),
        (b"path\n/etc/passwd\n", 422, "outside your images"),
        (b"path\ns3://other-bucket/x.png\n", 422, "outside your images"),
        (b"url\n" + b"http://example.com/a.png\n" * 13, 422, "more than 12 rows"),
    ],
)
def test_bad_csvs_are_refused_before_anything_starts(
    settings: GatewaySettings, body: bytes, status: int, words: str
) -> None:
    with TestClient(create_app(settings)) as client:
        token = sign_up(client)
        resp = submit(client, token, body)
        assert resp.status_code == status and words in resp.json()["detail"], resp.text
        assert client.get("/v1/credits", headers=auth(token)).json()["credits"] == 20
        assert client.get("/v1/batches", headers=auth(token)).json()["total"] == 0


def test_other_refusals(settings: GatewaySettings, site: Site) -> None:
    with TestClient(create_app(settings)) as client:
        alice, bob = sign_up(client), sign_up(client, "bob")
        body = site.csv(["1760.png"])
        assert submit(client, alice, body, model="nope").status_code == 404
        private = submit(client, alice, body, webhook_url="http://169.254.169.254/hook")
        assert private.status_code == 422 and "not a public address" in private.json()["detail"]
        no_secret = submit(client, alice, body, webhook_url=f"{site.url}/hook")
        assert no_secret.status_code == 409 and "webhook secret" in no_secret.json()["detail"]
        too_many = submit(client, alice, site.csv(["1760.png"] * 12))
        assert too_many.status_code == 201
        poor = submit(client, alice, site.csv(["1760.png"] * 9))
        assert poor.status_code == 402 and "9 images cost 9" in poor.json()["detail"]
        name = too_many.json()["name"]
        for path in (f"/v1/batches/{name}", f"/v1/batches/{name}/results", f"/v1/batches/{name}/results.csv"):
            assert client.get(path, headers=auth(bob)).status_code == 404, path
        wait_done(client, alice, name)


def test_a_running_batch_shows_its_progress_and_a_cancel_charges_only_what_it_classified(
    settings: GatewaySettings, s3_settings: S3Settings
) -> None:
    names = [f"{i}.png" for i in range(1700, 1712)]
    slow = Site(held=frozenset(names[6:]))  # half the images are answered, half hang until released
    try:
        with TestClient(create_app(settings)) as client:
            token = sign_up(client)
            name = submit(client, token, slow.csv(names)).json()["name"]

            def halfway() -> dict[str, Any] | None:
                info: dict[str, Any] = client.get(f"/v1/batches/{name}", headers=auth(token)).json()
                return info if info["counts"]["classified"] == 6 else None

            running = wait_for(halfway, timeout=60, what="the first six images counted while it runs")
            assert running["state"] == "Running" and running["counts"]["total"] == 12
            assert running["images_per_second"] > 0
            assert dt.datetime.fromisoformat(running["estimated_completion_time"]) > dt.datetime.now(dt.UTC)
            refused = client.delete(f"/v1/batches/{name}", headers=auth(token))
            assert refused.status_code == 409 and "cancel it first" in refused.text

            cancelled = client.post(f"/v1/batches/{name}/cancel", headers=auth(token))
            assert cancelled.status_code == 200, cancelled.text
            info = cancelled.json()
            assert info["state"] == "Failed" and info["message"] == "cancelled by its owner"
            assert info["counts"]["classified"] == 6 and info["images_per_second"] is None
            assert client.get("/v1/credits", headers=auth(token)).json()["credits"] == 20 - 6
            again = client.post(f"/v1/batches/{name}/cancel", headers=auth(token))
            assert again.status_code == 409 and "nothing to cancel" in again.text
            slow.release.set()  # the worker was stopped: nothing more is classified or charged
            time.sleep(1.5)
            assert client.get(f"/v1/batches/{name}", headers=auth(token)).json() == info
            assert client.get("/v1/credits", headers=auth(token)).json()["credits"] == 20 - 6
            assert client.get(f"/v1/batches/{name}/results", headers=auth(token)).status_code == 404

            store = ObjectStore(s3_settings)
            folder = f"{settings.gateway.batches_uri}/alice/{name}/"
            assert [o.uri for o in store.iter_objects(folder)]  # its CSV, at least
            assert client.delete(f"/v1/batches/{name}", headers=auth(token)).status_code == 204
            assert client.get(f"/v1/batches/{name}", headers=auth(token)).status_code == 404
            assert client.get("/v1/batches", headers=auth(token)).json()["total"] == 0
            assert not list(store.iter_objects(folder))
            assert client.get("/v1/credits", headers=auth(token)).json()["credits"] == 20 - 6
    finally:
        slow.release.set()
        slow.server.shutdown()


def test_results_by_label_and_a_finished_batch_deleted(settings: GatewaySettings, site: Site) -> None:
    with TestClient(create_app(settings)) as client:
        token = sign_up(client)
        sheet = site.csv([f"{i}.png" for i in DIGITS] + ["text.png"])
        name = submit(client, token, sheet, max_failed_fraction="0.5").json()["name"]
        assert wait_done(client, token, name)["state"] == "Succeeded"
        rows = client.get(f"/v1/batches/{name}/results", headers=auth(token)).json()["rows"]
        label = rows[0]["label"]
        mine = [r for r in rows if r["label"] == label]
        page = client.get(f"/v1/batches/{name}/results?label={label}", headers=auth(token)).json()
        assert page["rows"] == mine and not page["more"]
        one = client.get(f"/v1/batches/{name}/results?label={label}&limit=1", headers=auth(token)).json()
        assert one["rows"] == mine[:1] and one["more"] == (len(mine) > 1)
        streamed = client.get(f"/v1/batches/{name}/results.csv?label={label}", headers=auth(token))
        kept = list(csv.DictReader(io.StringIO(streamed.text)))
        assert [int(r["id"]) for r in kept] == [r["id"] for r in mine] and {r["label"] for r in kept} == {
            label
        }
        none = client.get(f"/v1/batches/{name}/results.csv?label=no-such", headers=auth(token))
        assert none.text.splitlines()[0].startswith("id,") and len(none.text.splitlines()) == 1
        assert client.post(f"/v1/batches/{name}/cancel", headers=auth(token)).status_code == 409
        assert client.delete(f"/v1/batches/{name}", headers=auth(token)).status_code == 204
        assert client.get(f"/v1/batches/{name}/results.csv", headers=auth(token)).status_code == 404
        assert client.delete(f"/v1/batches/{name}", headers=auth(token)).status_code == 404


def test_a_restart_mid_batch_loses_nothing_and_a_second_replica_is_refused(
    settings: GatewaySettings,
) -> None:
    slow = Site(delay=0.6)
    try:
        names = [f"{i}.png" for i in range(1780, 1792)]
        with TestClient(create_app(settings)) as client:
            token = sign_up(client)
            name = submit(client, token, slow.csv(names)).json()["name"]
            with pytest.raises(SecondReplica), TestClient(create_app(settings)):
                pass
            wait_for(
                lambda: client.get(f"/v1/batches/{name}", headers=auth(token)).json()["state"] == "Running",
                timeout=60,
                what="the batch to run",
            )
            for path in (f"/v1/batches/{name}/results", f"/v1/batches/{name}/results.csv"):
                early = client.get(path, headers=auth(token))
                assert early.status_code == 409 and "results come when it ends" in early.json()["detail"]
            time.sleep(1.0)  # the worker is fetching
        with TestClient(create_app(settings)) as client:  # a new gateway picks the batch up
            done = wait_done(client, token, name)
            assert done["state"] == "Succeeded" and done["counts"]["classified"] == 12
            rows = client.get(f"/v1/batches/{name}/results?limit=100", headers=auth(token)).json()["rows"]
            assert sorted(r["source"] for r in rows) == sorted(f"{slow.url}/{n}" for n in names)
            assert client.get("/v1/credits", headers=auth(token)).json()["credits"] == 20 - 12
    finally:
        slow.server.shutdown()


def test_a_date_batch_classifies_that_days_images_in_the_manifest(
    manifest: GatewaySettings, digits_predictor: PredictorServer
) -> None:
    settings = manifest
    with TestClient(create_app(settings)) as client:
        token = sign_up(client)
        created = client.post("/v1/batches", data={"date": DAY3}, headers=auth(token))
        assert created.status_code == 201, created.text
        assert created.json()["counts"]["total"] == 2 and created.json()["input"] == "manifest"
        done = wait_done(client, token, created.json()["name"])
        assert done["state"] == "Succeeded" and done["counts"]["classified"] == 2
        rows = client.get(f"/v1/batches/{done['name']}/results", headers=auth(token)).json()["rows"]
        assert sorted((r["label"], r["date"], r["extra"]["camera"]) for r in rows) == sorted(
            (predicted_label(digits_predictor, digit_png(i)[0]), DAY3, f"cam{i % 2}") for i in (1791, 1792)
        )
        nothing = client.post("/v1/batches", data={"date": "2026-01-01"}, headers=auth(token))
        assert nothing.status_code == 422 and "no images for 2026-01-01" in nothing.json()["detail"]
        both = client.post(
            "/v1/batches",
            data={"date": DAY3},
            files={"file": ("b.csv", b"url\nhttp://a/b.png\n", "text/csv")},
            headers=auth(token),
        )
        assert both.status_code == 422 and "exactly one of file and date" in both.json()["detail"]
    settings.gateway.manifest = None
    with TestClient(create_app(settings)) as client:
        resp = client.post("/v1/batches", data={"date": DAY3}, headers=auth(token))
        assert resp.status_code == 409 and "no manifest" in resp.json()["detail"]


@pytest.fixture
def manifest(settings: GatewaySettings, store: ObjectStore, bucket: str) -> GatewaySettings:
    """A daily manifest: one image on DAY1, none on EMPTY, two on DAY3."""
    lines = ["filepath,date,camera"]
    for i, day in ((1790, DAY1), (1791, DAY3), (1792, DAY3)):
        store.write(f"s3://{bucket}/data/{day}/{i}.png", digit_png(i)[0])
        lines.append(f"{day}/{i}.png,{day},cam{i % 2}")
    store.write(f"s3://{bucket}/data/metadata.csv", ("\n".join(lines) + "\n").encode())
    settings.gateway.manifest = ManifestInput(
        uri=f"s3://{bucket}/data/metadata.csv", root=f"s3://{bucket}/data/"
    )
    return settings


@pytest.mark.calendar
def test_a_schedule_works_through_the_days_skips_empty_ones_and_collects_its_results(
    manifest: GatewaySettings,
) -> None:
    app = create_app(manifest)
    with TestClient(app) as client:
        token, bob = sign_up(client), sign_up(client, "bob")
        body = {
            "cron": "30 1 * * *",
            "time_zone": "Europe/Paris",
            "start_date": DAY1,
            "catch_up": True,
        }
        created = client.post("/v1/schedules", json=body, headers=auth(token))
        assert created.status_code == 201, created.text
        name = created.json()["name"]
        assert created.json()["next_date"] == DAY1 and created.json()["next_run"]

        now = dt.datetime.combine(TODAY, dt.time(12), dt.UTC)  # DAY3 is yesterday

        def info() -> dict[str, Any]:
            return client.get(f"/v1/schedules/{name}", headers=auth(token)).json()  # type: ignore[no-any-return]

        def batches() -> list[dict[str, Any]]:
            return client.get("/v1/batches", headers=auth(token)).json()["items"]  # type: ignore[no-any-return]

        client.portal.call(app.state.schedules.fire, name, now)  # DAY1, one image
        client.portal.call(app.state.schedules.fire, name, now)  # while DAY1 runs: nothing (never overlap)
        assert len(batches()) == 1 and info()["last_date"] is None, "a date is done when its run is"
        assert wait_done(client, token, batches()[0]["name"])["state"] == "Succeeded"
        assert info()["last_date"] == DAY1
        client.portal.call(app.state.schedules.fire, name, now)  # EMPTY: no images, done at once
        assert info()["last_date"] == EMPTY and len(batches()) == 1
        client.portal.call(app.state.schedules.fire, name, now)  # DAY3, two images
        assert wait_done(client, token, batches()[0]["name"])["state"] == "Succeeded"
        assert info()["last_date"] == DAY3 and info()["next_date"] == TODAY.isoformat()
        assert sorted(b["counts"]["total"] for b in batches()) == [1, 2]
        runs = client.get(f"/v1/schedules/{name}/runs", headers=auth(token)).json()
        assert [(r["date"], r["state"], r["counts"]["classified"]) for r in runs] == [
            (DAY3, "Succeeded", 2),
            (DAY1, "Succeeded", 1),
        ], "newest first; the empty day ran nothing"
        assert [r["batch"] for r in runs] == [b["name"] for b in batches()]
        one = client.get(f"/v1/schedules/{name}/runs?limit=1", headers=auth(token)).json()
        assert one == runs[:1]

        def merged() -> list[dict[str, str]]:
            text = client.get(f"/v1/schedules/{name}/results.csv", headers=auth(token)).text
            assert text.count("id,source,date,label") == 1, "one header"
            return list(csv.DictReader(io.StringIO(text)))

        assert sorted(r["date"] for r in merged()) == [DAY1, DAY3, DAY3]

        ran = client.post(f"/v1/schedules/{name}/run", json={"date": DAY3}, headers=auth(token))
        assert ran.status_code == 202 and ran.json()["date"] == DAY3
        again = client.post(f"/v1/schedules/{name}/run", json={"date": DAY1}, headers=auth(token))
        assert again.status_code == 409 and "never overlap" in again.json()["detail"]
        assert wait_done(client, token, ran.json()["batch"])["counts"]["total"] == 2
        assert sorted(r["date"] for r in merged()) == [DAY1, DAY3, DAY3], "a rerun replaces its date's rows"
        empty = client.post(f"/v1/schedules/{name}/run", json={"date": EMPTY}, headers=auth(token))
        assert empty.status_code == 422

        starting = app.state.accounts.redis.lock(f"kc:schedule-start:{name}", timeout=30)
        assert client.portal.call(starting.acquire)  # another start of it, in the middle of counting
        busy = client.post(f"/v1/schedules/{name}/run", json={"date": DAY1}, headers=auth(token))
        assert busy.status_code == 409 and "starting" in busy.json()["detail"], busy.text
        client.portal.call(starting.release)

        assert client.post(f"/v1/schedules/{name}/pause", headers=auth(token)).json()["paused"]
        client.portal.call(app.state.schedules.fire, name, now + dt.timedelta(days=7))
        assert info()["last_date"] == DAY3 and len(batches()) == 3, "a paused schedule fires nothing"
        paused_empty = client.post(f"/v1/schedules/{name}/run", json={"date": EMPTY}, headers=auth(token))
        assert paused_empty.status_code == 422, "no images, not 402: pausing is not about credits"
        paused_run = client.post(f"/v1/schedules/{name}/run", json={"date": DAY1}, headers=auth(token))
        assert paused_run.status_code == 202, "its owner may run a date of a paused schedule"
        wait_done(client, token, paused_run.json()["batch"])
        assert not client.post(f"/v1/schedules/{name}/resume", headers=auth(token)).json()["paused"]
        for path in (
            f"/v1/schedules/{name}",
            f"/v1/schedules/{name}/results.csv",
            f"/v1/schedules/{name}/runs",
        ):
            assert client.get(path, headers=auth(bob)).status_code == 404
        assert client.post(f"/v1/schedules/{name}/pause", headers=auth(bob)).status_code == 404
        assert [s["name"] for s in client.get("/v1/schedules", headers=auth(token)).json()] == [name]

        for bad, words in (
            ({"cron": "every day"}, "cron"),
            ({"cron": "* * * * *", "time_zone": "Mars/Base"}, "zone"),
        ):
            resp = client.post("/v1/schedules", json=bad, headers=auth(token))
            assert resp.status_code == 422 and words in resp.json()["detail"], resp.text


@pytest.mark.calendar
def test_a_failed_date_is_tried_again_then_the_schedule_pauses_with_the_reason(
    manifest: GatewaySettings, store: ObjectStore, bucket: str
) -> None:
    good = store.read(f"s3://{bucket}/data/{DAY1}/1790.png")
    store.write(f"s3://{bucket}/data/{DAY1}/1790.png", b"not an image")  # DAY1's one image fails
    app = create_app(manifest)
    with TestClient(app) as client:
        token = sign_up(client)
        body = {"cron": "30 1 * * *", "start_date": DAY1, "catch_up": True}
        name = client.post("/v1/schedules", json=body, headers=auth(token)).json()["name"]
        now = dt.datetime.combine(TODAY, dt.time(12), dt.UTC)
        for tries in (1, 2, 3):
            client.portal.call(app.state.schedules.fire, name, now)
            newest = client.get("/v1/batches", headers=auth(token)).json()["items"][0]
            assert DAY1.replace("-", "") in newest["name"]
            assert wait_done(client, token, newest["name"])["state"] == "Failed"
            info = client.get(f"/v1/schedules/{name}", headers=auth(token)).json()
            assert (info["last_date"], info["failures"]) == (None, tries), "a failed date is not done"
            assert info["last_error"].startswith(DAY1)
        assert info["paused"] and "failed 3 times in a row" in info["reason"]
        client.portal.call(app.state.schedules.fire, name, now)
        assert client.get("/v1/batches", headers=auth(token)).json()["total"] == 3, "paused: no fourth try"

        store.write(f"s3://{bucket}/data/{DAY1}/1790.png", good)
        resumed = client.post(f"/v1/schedules/{name}/resume", headers=auth(token)).json()
        assert not resumed["paused"] and resumed["failures"] == 0
        client.portal.call(app.state.schedules.fire, name, now)
        newest = client.get("/v1/batches", headers=auth(token)).json()["items"][0]
        assert wait_done(client, token, newest["name"])["state"] == "Succeeded"
        info = client.get(f"/v1/schedules/{name}", headers=auth(token)).json()
        assert (info["last_date"], info["failures"], info["last_error"]) == (DAY1, 0, "")


def test_a_schedule_whose_owner_runs_dry_is_paused_with_the_reason(manifest: GatewaySettings) -> None:
    app = create_app(manifest)
    with TestClient(app) as client:
        token = sign_up(client)
        body = {"cron": "30 1 * * *", "start_date": DAY3}
        name = client.post("/v1/schedules", json=body, headers=auth(token)).json()["name"]
        client.portal.call(app.state.accounts.redis.set, "kc:credits:alice", 1)
        now = dt.datetime.combine(TODAY, dt.time(12), dt.UTC)  # DAY3 is yesterday
        client.portal.call(app.state.schedules.fire, name, now)
        info = client.get(f"/v1/schedules/{name}", headers=auth(token)).json()
        assert info["paused"] and "out of credits" in info["reason"] and info["last_date"] is None
        assert client.get("/v1/batches", headers=auth(token)).json()["total"] == 0


@pytest.mark.calendar
def test_the_cron_fires_through_the_scheduler(manifest: GatewaySettings) -> None:
    manifest.gateway.min_schedule_interval = 60  # as ENVIRONMENT=development sets it
    with TestClient(create_app(manifest)) as client:
        token = sign_up(client)
        # The one-minute trigger, for trying. Catching up from DAY3 makes DAY3 the first run whatever
        # the time: without it the run takes yesterday, which is DAY3 only until midnight.
        body = {"cron": "* * * * *", "start_date": DAY3, "catch_up": True}
        name = client.post("/v1/schedules", json=body, headers=auth(token)).json()["name"]
        last = wait_for(  # it fires at the next whole minute
            lambda: client.get(f"/v1/schedules/{name}", headers=auth(token)).json()["last_date"],
            timeout=120,
            what="the cron to fire",
        )
        assert last == DAY3
        batches = client.get("/v1/batches", headers=auth(token)).json()
        assert batches["total"] == 1 and batches["items"][0]["counts"]["total"] == 2


def test_schedules_are_capped_per_account_and_may_not_fire_too_often(manifest: GatewaySettings) -> None:
    manifest.gateway.max_schedules = 2
    admin_password = "the admin's own password"
    manifest.gateway.admin_password_hash = SecretStr(hash_password(admin_password))
    app = create_app(manifest)
    with TestClient(app) as client:
        token = sign_up(client)
        for cron, every in (
            ("* * * * *", "every 1 min"),
            ("0,30 9 * * *", "every 30 min"),
            ("0 */2 * * *", None),
        ):
            resp = client.post("/v1/schedules", json={"cron": cron}, headers=auth(token))
            if every is None:
                assert resp.status_code == 201, resp.text  # every two hours: allowed
            else:
                assert resp.status_code == 422 and every in resp.json()["detail"], resp.text
                assert "at most every 1 h" in resp.json()["detail"]
        assert (
            client.post("/v1/schedules", json={"cron": "30 1 * * *"}, headers=auth(token)).status_code == 201
        )
        third = client.post("/v1/schedules", json={"cron": "30 2 * * *"}, headers=auth(token))
        assert third.status_code == 409 and "2 schedules" in third.json()["detail"]

        first = client.get("/v1/schedules", headers=auth(token)).json()[-1]["name"]
        other = sign_up(client, "bob")
        assert client.delete(f"/v1/schedules/{first}", headers=auth(other)).status_code == 404
        assert client.delete(f"/v1/schedules/{first}", headers=auth(token)).status_code == 204
        assert client.get(f"/v1/schedules/{first}", headers=auth(token)).status_code == 404
        assert first not in app.state.schedules._next, "it fires no more"
        assert (
            client.post("/v1/schedules", json={"cron": "30 2 * * *"}, headers=auth(token)).status_code == 201
        )

        admin = client.post("/v1/auth/token", data={"username": "admin", "password": admin_password}).json()
        minute = client.post("/v1/schedules", json={"cron": "* * * * *"}, headers=auth(admin["access_token"]))
        assert minute.status_code == 201, "admins may use any cron"


def test_schedules_need_a_manifest(settings: GatewaySettings) -> None:
    with TestClient(create_app(settings)) as client:
        resp = client.post("/v1/schedules", json={"cron": "* * * * *"}, headers=auth(sign_up(client)))
        assert resp.status_code == 409 and "no manifest" in resp.json()["detail"]


def test_batches_start_when_redis_comes_up_after_the_gateway(
    tmp_path: Path, settings: GatewaySettings, site: Site
) -> None:
    port, password = free_port(), "a-redis-password"
    settings.gateway.redis_url = SecretStr(f"redis://:{password}@127.0.0.1:{port}/0")
    settings.gateway.admin_password_hash = SecretStr(hash_password("the admin's password"))
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 503
        redis = start_redis(tmp_path / "redis", tmp_path / "logs", port=port, password=password)
        try:
            wait_for(
                lambda: client.get("/readyz").status_code == 200, timeout=60, what="ready once Redis is up"
            )
            admin = client.post(
                "/v1/auth/token", data={"username": "admin", "password": "the admin's password"}
            )
            assert admin.status_code == 200, "the first admin was made once Redis answered"
            token = sign_up(client)
            name = submit(client, token, site.csv(["1760.png"])).json()["name"]
            assert wait_done(client, token, name)["state"] == "Succeeded", "the local backend started"
        finally:
            redis.stop()
