"""The ledger while what it stands on restarts: two gateway replicas against one Redis follow the
runs of a Kubernetes backend (one-off batches, schedules catching up over missed days, runs of a
date asked for again) while, at seeded random moments, Redis is killed (SIGKILL) and started again
from its append-only file, or a replica shuts down and a new one starts. The real operator admits
nothing the gateway has not; a stand-in for the Job controller ends each Job with counts of its own choosing,
never more images than the run was admitted for. At the end every run was admitted before its Job
existed and settled once: each account's debits are the images its runs classified, and no balance
went below zero."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chaos.conftest import DAYS
from e2e.conftest import start_operator
from e2e.test_gateway_kubernetes import kubernetes_backend, manifest, serve_digits
from e2e.test_ledger_kubernetes import end_job
from fastapi.testclient import TestClient
from harness.gateway import sign_up
from harness.wait import wait_for
from kubernetes import client
from redis import Redis

from kubeclassify.cli.services import RedisServer, start_redis
from kubeclassify.core import constants as c
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway.app import create_app

USERS, ONE_OFFS, PER_DAY, RESTARTS = ("ann", "ben", "cat"), 2, 3, 8
RUN_DAYS = DAYS[-4:]
CREDITS = 100


SHUTDOWN_SECONDS = 60  # far more than a replica's shutdown takes; one that needs it never ends


class Replicas:
    """Gateway replicas of one install (in this process, each with its own event loop)."""

    def __init__(self, settings: Any, count: int) -> None:
        self.settings = settings
        self.running: list[TestClient] = [self._start() for _ in range(count)]

    def _start(self) -> TestClient:
        replica = TestClient(create_app(self.settings))
        replica.__enter__()
        return replica

    def restart(self, index: int, seed: int) -> None:
        """Shut replica `index` down (its lifespan's shutdown, as on SIGTERM) and start a new one."""
        shutdown = threading.Thread(target=self.running[index].__exit__, args=(None, None, None), daemon=True)
        shutdown.start()
        shutdown.join(SHUTDOWN_SECONDS)
        if shutdown.is_alive():
            pytest.fail(
                f"a gateway replica did not finish shutting down in {SHUTDOWN_SECONDS} s (seed {seed})"
            )
        self.running[index] = self._start()

    def close(self) -> None:
        for replica in self.running:
            replica.__exit__(None, None, None)


@pytest.mark.timeout(600)
def test_every_run_is_paid_for_once_while_redis_and_replicas_restart(
    seed: int,
    kube_api,  # type: ignore[no-untyped-def]
    api_client: client.ApiClient,
    namespace: str,
    s3_settings: S3Settings,
    bucket: str,
    tmp_path: Path,
    report: Callable[[str], None],
) -> None:
    rng = random.Random(seed)
    custom, jobs = client.CustomObjectsApi(api_client), client.BatchV1Api(api_client)
    redis: RedisServer = start_redis(tmp_path / "redis", tmp_path / "logs", persist=True)
    settings = kubernetes_backend(kube_api, custom, namespace, redis, s3_settings, bucket)
    settings.gateway.starting_credits = CREDITS
    settings.gateway.manifest = manifest(ObjectStore(s3_settings), bucket, dict.fromkeys(RUN_DAYS, PER_DAY))
    store_url = settings.gateway.redis_url.get_secret_value()
    operator = start_operator(
        kube_api.kubeconfig,
        tmp_path / "operator",
        namespaces=f'["{namespace}"]',
        gateway_images_uri=f"s3://{bucket}/images",
    )
    ended: dict[str, int] = {}  # Job -> images its run classified, as the stand-in ended it
    unadmitted: list[str] = []
    stop = threading.Event()

    def job_controller() -> None:
        """End each batch Job: classified a seeded part of what its run was admitted for."""
        while not stop.is_set():
            for job in jobs.list_namespaced_job(namespace).items:
                name = job.metadata.name
                if name in ended or job.metadata.labels.get(c.LABEL_COMPONENT) != "batch":
                    continue
                args = job.spec.template.spec.containers[0].args
                if "--max-images" not in args:
                    unadmitted.append(name)
                    ended[name] = 0
                    continue
                admitted = int(args[args.index("--max-images") + 1])
                classified = random.Random(f"{seed}:{name}").randint(0, admitted)
                end_job(api_client, namespace, name, classified, admitted - classified)
                ended[name] = classified
            stop.wait(0.2)

    def restart_redis() -> None:
        nonlocal redis
        os.killpg(redis.process.pid, signal.SIGKILL)
        redis.process.popen.wait()
        time.sleep(rng.uniform(0.1, 1.5))
        redis = start_redis(
            tmp_path / "redis", tmp_path / "logs", port=redis.port, password=redis.password, persist=True
        )

    def cb(name: str) -> dict[str, Any]:
        return custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PLURALS[c.CLASSIFICATION_BATCH], name
        )

    def answered(call: Callable[[], Any]) -> Any:
        """A request's answer as a client gets it: asked again after a 503. Redis just restarted
        costs a replica one 503 per pooled connection idle since (redis-py finds it closed); the
        gateway does not retry commands itself, since a debit retried after a lost reply would be
        taken twice."""
        return wait_for(lambda: (a := call()).status_code != 503 and a, timeout=30, what="an answer")

    def run_again(schedule: str, auth: dict[str, str]) -> None:
        """Ask for the schedule's first date again."""
        path, date = f"/v1/schedules/{schedule}/run", {"date": str(RUN_DAYS[0])}
        answer = answered(lambda: replicas.running[0].post(path, json=date, headers=auth))
        assert answer.status_code == 202, answer.text

    controller = threading.Thread(target=job_controller, daemon=True)
    replicas: Replicas | None = None
    lowest: dict[str, int] = {}
    restarts = {"Redis": 0, "a gateway replica": 0}
    try:
        serve_digits(custom, namespace)
        replicas = Replicas(settings, 2)
        gw = replicas.running[0]
        auth = {user: {"Authorization": f"Bearer {sign_up(gw, user)}"} for user in USERS}
        schedules, one_offs = {}, []
        for user in USERS:
            body = {"cron": "30 1 * * *", "start_date": str(RUN_DAYS[0]), "catch_up": True}
            made = gw.post("/v1/schedules", json=body, headers=auth[user])
            assert made.status_code == 201, made.text
            schedules[user] = made.json()["name"]
            for _ in range(ONE_OFFS):
                rows = "url\n" + "".join(
                    f"https://images.example.com/{i}.png\n" for i in range(rng.randint(1, 4))
                )
                created = gw.post(
                    "/v1/batches", files={"file": ("b.csv", rows, "text/csv")}, headers=auth[user]
                )
                assert created.status_code == 201, created.text
                one_offs.append((user, created.json()["name"]))
        for name in schedules.values():  # each CronJob's first tick, as its pod would stamp it
            tick = {"metadata": {"annotations": {c.ANNOTATION_TICK: str(time.time())}}}
            custom.patch_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURALS[c.CLASSIFICATION_BATCH], name, tick
            )
        controller.start()

        again = rng.choice(USERS)  # asks for its first date again, mid-way
        for k in range(RESTARTS):
            time.sleep(rng.uniform(0.2, 1.5))
            if rng.random() < 0.5:
                restart_redis()
                restarts["Redis"] += 1
            else:
                replicas.restart(rng.randrange(2), seed)
                restarts["a gateway replica"] += 1
            with Redis.from_url(store_url) as r:
                for user in USERS:
                    lowest[user] = min(lowest.get(user, CREDITS), int(r.get(f"kc:credits:{user}") or 0))
            if k == RESTARTS // 2:
                run_again(schedules[again], auth[again])

        def done() -> bool:
            daily = all(
                cb(n).get("status", {}).get("lastProcessedDate") == str(RUN_DAYS[-1])
                for n in schedules.values()
            )
            rerun = any(
                r["jobName"].endswith("-r1") for r in cb(schedules[again])["status"].get("recentRuns", [])
            )
            gw = replicas.running[0]
            states = [gw.get(f"/v1/batches/{n}", headers=auth[u]).json().get("state") for u, n in one_offs]
            with Redis.from_url(store_url) as r:
                settled = all(r.hget(f"kc:run:{job}", "state") == b"settled" for job in list(ended))
            return daily and rerun and settled and all(s in ("Succeeded", "Failed") for s in states)

        wait_for(done, timeout=240, what=f"every run ended and settled (seed {seed}, {restarts})")
        stop.set()
        controller.join()
        assert unadmitted == [], f"Jobs made before the gateway admitted their run (seed {seed})"
        owners = {}
        for job in jobs.list_namespaced_job(namespace).items:
            batch = job.metadata.labels[c.LABEL_CLASSIFICATION_BATCH]
            owners[job.metadata.name] = cb(batch)["metadata"]["labels"][c.LABEL_OWNER]
        assert set(owners) == set(ended)
        gw = replicas.running[0]
        with Redis.from_url(store_url) as r:
            for job in ended:
                record = {k.decode(): v.decode() for k, v in r.hgetall(f"kc:run:{job}").items()}
                assert record["state"] == "settled" and int(record["used"]) == ended[job], (job, record, seed)
        for user in USERS:
            answer = answered(lambda u=user: gw.get("/v1/credits", headers=auth[u]))
            assert answer.status_code == 200, answer.text
            spent = CREDITS - answer.json()["credits"]
            classified = sum(n for job, n in ended.items() if owners[job] == user)
            assert spent == classified, f"{user}: debits are the images classified (seed {seed})"
            assert lowest[user] >= 0
        what = ", ".join(f"{who} restarted {n}x" for who, n in restarts.items())
        report(f"{what}; {len(ended)} runs settled")
    finally:
        stop.set()
        if replicas is not None:
            replicas.close()
        operator.process.stop()
        redis.stop()
