"""Credits are conserved on the local backend: online classifications, one-off CSV and date batches,
a schedule's manual runs and a rerun of one of its dates go at once, the gateway is restarted while
they run, and at the end every credit spent is an image classified, every run has its ledger record
(admitted before it ran) and was settled once. Real Redis, SeaweedFS, the digits predictor and the
batch worker as processes."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from harness.gateway import Site, digit_png, local_settings, sign_up
from harness.wait import wait_for

from kubeclassify.cli.services import PredictorServer, RedisServer
from kubeclassify.core.resources.classification_batch import ManifestInput
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.batches import Batches
from kubeclassify.gateway.config import GatewaySettings
from kubeclassify.gateway.ledger import Ledger

TODAY = dt.datetime.now(dt.UTC).date()
DAY1, DAY2 = (TODAY - dt.timedelta(days=n) for n in (3, 1))
START = 60  # each account's credits; an image costs 1


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site(delay=0.2)  # slow enough that the restart comes while batches run
    yield s
    s.server.shutdown()


@pytest.fixture
def settings(
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
    digits_predictor: PredictorServer,
    store: ObjectStore,
) -> GatewaySettings:
    lines = ["filepath,date"]
    for i, day in ((1790, DAY1), (1791, DAY2), (1792, DAY2), (1793, DAY2)):
        store.write(f"s3://{bucket}/data/{day}/{i}.png", digit_png(i)[0])
        lines.append(f"{day}/{i}.png,{day}")
    store.write(f"s3://{bucket}/data/metadata.csv", ("\n".join(lines) + "\n").encode())
    settings = local_settings(
        redis_server,
        s3_settings,
        bucket,
        digits_predictor,
        fetch_allowed_networks=["127.0.0.0/8"],
        local_batch_concurrency=2,
    )
    settings.gateway.starting_credits = START
    settings.gateway.manifest = ManifestInput(
        uri=f"s3://{bucket}/data/metadata.csv", root=f"s3://{bucket}/data/"
    )
    return settings


def test_every_credit_spent_is_an_image_classified(settings: GatewaySettings, site: Site) -> None:
    with TestClient(create_app(settings)) as gw:
        tokens = {user: sign_up(gw, user) for user in ("alice", "bob")}
        auth = {user: {"Authorization": f"Bearer {token}"} for user, token in tokens.items()}
        schedule = gw.post(
            "/v1/schedules", json={"cron": "30 1 * * *", "start_date": DAY1.isoformat()}, headers=auth["bob"]
        ).json()["name"]

        def online(user: str, i: int) -> Callable[[], Any]:
            png = digit_png(1700 + i)[0]
            return lambda: (
                gw.post(
                    "/v1/classify", files={"file": ("d.png", png, "image/png")}, headers=auth[user]
                ).status_code
            )

        def csv_batch(user: str, first: int) -> Callable[[], Any]:
            names = [f"{i}.png" for i in range(first, first + 4)] + ["missing.png"]
            body = site.csv(names)
            files = {"file": ("b.csv", body, "text/csv")}
            return lambda: gw.post(
                "/v1/batches", files=files, data={"max_failed_fraction": "0.5"}, headers=auth[user]
            ).json()["name"]

        def date_batch(user: str, day: dt.date) -> Callable[[], Any]:
            return lambda: gw.post("/v1/batches", data={"date": day.isoformat()}, headers=auth[user]).json()[
                "name"
            ]

        def manual_run(day: dt.date) -> Callable[[], Any]:
            def run() -> Any:
                # Runs of one schedule never overlap: 409 while another goes, so ask until it starts.
                def started() -> Any:
                    answer = gw.post(
                        f"/v1/schedules/{schedule}/run", json={"date": day.isoformat()}, headers=auth["bob"]
                    )
                    return answer.json()["batch"] if answer.status_code == 202 else None

                return wait_for(started, timeout=120, what=f"a run of {day}")

            return run

        work = [
            *(online(user, i) for user in ("alice", "bob") for i in range(4)),
            csv_batch("alice", 1750),
            csv_batch("bob", 1760),
            date_batch("alice", DAY2),
            manual_run(DAY1),
            manual_run(DAY2),
        ]
        with concurrent.futures.ThreadPoolExecutor(len(work)) as pool:
            results = [f.result() for f in [pool.submit(job) for job in work]]
        statuses, batch_names = results[:8], results[8:]
        assert statuses == [200] * 8
        time.sleep(0.5)  # the worker processes are fetching: the gateway stops mid-batch

    with TestClient(create_app(settings)) as gw:  # a new gateway resumes what had not ended
        rerun = gw.post(f"/v1/schedules/{schedule}/run", json={"date": DAY2.isoformat()}, headers=auth["bob"])
        while rerun.status_code == 409:  # the schedule's run of DAY2 is still going
            time.sleep(0.5)
            rerun = gw.post(
                f"/v1/schedules/{schedule}/run", json={"date": DAY2.isoformat()}, headers=auth["bob"]
            )
        assert rerun.status_code == 202, rerun.text
        batch_names.append(rerun.json()["batch"])

        def ended(user: str, name: str) -> dict[str, Any] | None:
            info: dict[str, Any] = gw.get(f"/v1/batches/{name}", headers=auth[user]).json()
            return info if info["state"] in ("Succeeded", "Failed") else None

        owners = ["alice", "bob", "alice", "bob", "bob", "bob"]
        done = [
            wait_for(lambda u=u, n=n: ended(u, n), timeout=180)
            for u, n in zip(owners, batch_names, strict=True)
        ]
        assert [d["state"] for d in done] == ["Succeeded"] * 6, done
        left = {user: gw.get("/v1/credits", headers=auth[user]).json()["credits"] for user in auth}
        redis = gw.app.state.accounts.redis  # type: ignore[attr-defined]

        async def record(name: str) -> dict[str, str]:
            batch = await Batches(redis).get(name)
            assert batch is not None
            return await Ledger(redis).get(batch.run_id)

        runs = [gw.portal.call(record, name) for name in batch_names]  # type: ignore[union-attr]

    classified = {user: 4 for user in auth}  # the online ones
    for owner, batch in zip(owners, done, strict=True):
        classified[owner] += batch["counts"]["classified"]
    assert [d["counts"]["classified"] for d in done] == [4, 4, 3, 1, 3, 3]
    assert {user: START - left[user] for user in auth} == classified, "the debits are the images classified"
    assert all(r["state"] == "settled" for r in runs), runs
    assert [int(r["used"]) for r in runs] == [d["counts"]["classified"] for d in done]
