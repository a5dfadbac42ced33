"""Every run of a gateway user's batch on the Kubernetes backend is admitted by the gateway before
its Job exists, and paid for once: the real operator and the real gateway against the emulator,
with a stand-in for the Job controller that ends each Job with the counts a worker would report.
Online classifications through the ModelDeployment's predictor go on meanwhile; a one-off batch,
a schedule's dates (one paid for, one refused) and a rerun asked for while no gateway runs are
each charged exactly the images they classified."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from e2e.conftest import start_operator
from e2e.test_gateway_kubernetes import kubernetes_backend, manifest, serve_digits
from fastapi.testclient import TestClient
from harness.gateway import digit_png, sign_up
from harness.wait import wait_for
from kubernetes import client

from kubeclassify.cli.services import PredictorServer, RedisServer
from kubeclassify.core import constants as c
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway.app import create_app

CB = c.PLURALS[c.CLASSIFICATION_BATCH]
TODAY = dt.datetime.now(dt.UTC).date()
DAY1, DAY2 = TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=1)


def end_job(api: client.ApiClient, namespace: str, name: str, classified: int, failed: int) -> None:
    """End the Job as the Job controller would, its one pod's termination message carrying the
    worker's counts."""
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    counts = {"total": classified + failed, "classified": classified, "failed": failed, "skipped": 0}
    summary = {"counts": counts, "output": "s3://x/results.csv", "published": True, "shard": 0, "shards": 1}
    pod = f"{name}-0-done"
    labels = {"batch.kubernetes.io/job-name": name}
    annotations = {"batch.kubernetes.io/job-completion-index": "0"}
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": pod, "labels": labels, "annotations": annotations},
            "spec": {"containers": [{"name": "worker", "image": "x"}]},
        },
    )
    terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(summary)}
    container = {"name": "worker", "ready": False, "restartCount": 0, "image": "x", "imageID": ""}
    status = {"phase": "Succeeded", "containerStatuses": [{**container, "state": {"terminated": terminated}}]}
    core.patch_namespaced_pod_status(pod, namespace, {"status": status})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    done = {"type": "Complete", "status": "True", "lastTransitionTime": now}
    job_status = {"startTime": now, "completionTime": now, "conditions": [done], "succeeded": 1}
    batch.patch_namespaced_job_status(name, namespace, {"status": job_status})


def test_each_run_waits_for_the_gateway_and_is_paid_for_once(
    kube_api,  # type: ignore[no-untyped-def]
    api_client: client.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
    tmp_path: Path,
    digits_predictor: PredictorServer,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    jobs = client.BatchV1Api(api_client)
    settings = kubernetes_backend(kube_api, custom, namespace, redis_server, s3_settings, bucket)
    settings.gateway.manifest = manifest(ObjectStore(s3_settings), bucket, {DAY1: 3, DAY2: 20})
    operator = start_operator(
        kube_api.kubeconfig,
        tmp_path / "operator",
        namespaces=f'["{namespace}"]',
        gateway_images_uri=f"s3://{bucket}/images",
    )

    def cb(name: str) -> dict[str, Any]:
        return custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, CB, name)

    def job(name: str) -> dict[str, Any]:
        found = wait_for(
            lambda: [j for j in jobs.list_namespaced_job(namespace).items if j.metadata.name == name],
            what=f"the Job {name}",
        )
        return dict(api_client.sanitize_for_serialization(found[0]))

    def job_names() -> list[str]:
        return sorted(j.metadata.name for j in jobs.list_namespaced_job(namespace).items)

    try:
        serve_digits(custom, namespace, digits_predictor.url)
        with TestClient(create_app(settings)) as gw, concurrent.futures.ThreadPoolExecutor(4) as pool:
            auth = {"Authorization": f"Bearer {sign_up(gw)}"}  # 10 credits, 1 an image
            # Carol classifies online all the while (through the ModelDeployment's predictor).
            carol = {"Authorization": f"Bearer {sign_up(gw, 'carol')}"}
            png = digit_png(1750)[0]
            online = [
                pool.submit(
                    lambda: (
                        gw.post(
                            "/v1/classify", files={"file": ("d.png", png, "image/png")}, headers=carol
                        ).status_code
                    )
                )
                for _ in range(6)
            ]

            # A one-off batch is admitted as it is created: its Job runs at once, for its 2 rows.
            bob = {"Authorization": f"Bearer {sign_up(gw, 'bob')}"}
            rows = b"url\nhttps://images.example.com/a.png\nhttps://images.example.com/b.png\n"
            one_off = gw.post("/v1/batches", files={"file": ("b.csv", rows, "text/csv")}, headers=bob)
            assert one_off.status_code == 201, one_off.text
            its_job = job(one_off.json()["name"])
            args = its_job["spec"]["template"]["spec"]["containers"][0]["args"]
            assert args[args.index("--max-images") + 1] == "2"
            assert gw.get("/v1/credits", headers=bob).json()["credits"] == 8
            end_job(api_client, namespace, its_job["metadata"]["name"], classified=1, failed=1)
            wait_for(
                lambda: gw.get("/v1/credits", headers=bob).json()["credits"] == 9,
                what="bob's batch settled on the 1 image classified",
            )
            made = gw.post(
                "/v1/schedules",
                json={"cron": "30 1 * * *", "start_date": DAY1.isoformat(), "catch_up": True},
                headers=auth,
            )
            assert made.status_code == 201, made.text
            name = made.json()["name"]
            tick = {"metadata": {"annotations": {c.ANNOTATION_TICK: str(time.time())}}}
            custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, namespace, CB, name, tick)

            # DAY1's 3 images are reserved, and its Job classifies no more than those.
            first = job(f"{name}-{DAY1:%Y%m%d}")
            args = first["spec"]["template"]["spec"]["containers"][0]["args"]
            assert args[args.index("--max-images") + 1] == "3"
            assert gw.get("/v1/credits", headers=auth).json()["credits"] == 7
            end_job(api_client, namespace, first["metadata"]["name"], classified=2, failed=1)

            # Settled on the 2 classified; DAY2's 20 images are more than the 8 left: refused, and
            # the schedule pauses with the reason, its ClassificationBatch suspended; no Job.
            info = wait_for(
                lambda: (s := gw.get(f"/v1/schedules/{name}", headers=auth).json())["paused"] and s,
                what="the schedule paused",
            )
            assert "out of credits" in info["reason"] and "20 images" in info["reason"], info
            assert cb(name)["spec"]["schedule"]["suspend"] is True
            refused = wait_for(
                lambda: [r for r in cb(name)["status"].get("recentRuns", []) if r.get("date") == str(DAY2)],
                what="DAY2 recorded",
            )
            assert refused[0]["reason"] == "AdmissionRefused"
            assert job_names() == sorted([its_job["metadata"]["name"], first["metadata"]["name"]])
            assert gw.get("/v1/credits", headers=auth).json()["credits"] == 8
            assert [f.result() for f in online] == [200] * 6
            assert gw.get("/v1/credits", headers=carol).json()["credits"] == 10 - 6

        # The gateway is down: a rerun asked for with kubectl waits, visibly, and makes no Job.
        rerun = {"metadata": {"annotations": {c.ANNOTATION_RERUN_DATE: DAY1.isoformat()}}}
        custom.patch_namespaced_custom_object(c.GROUP, c.VERSION, namespace, CB, name, rerun)
        wait_for(lambda: cb(name)["status"].get("phase") == "AwaitingAdmission", what="AwaitingAdmission")
        assert cb(name)["status"]["pendingRun"]["id"] == f"{name}-{DAY1:%Y%m%d}-r1"
        time.sleep(2.0)
        assert job_names() == sorted([its_job["metadata"]["name"], first["metadata"]["name"]])

        # A gateway again (a fresh process): it admits the waiting run, which is paid for once.
        with TestClient(create_app(settings)) as gw:
            again = job(f"{name}-{DAY1:%Y%m%d}-r1")
            assert gw.get("/v1/credits", headers=auth).json()["credits"] == 5
            end_job(api_client, namespace, again["metadata"]["name"], classified=3, failed=0)
            wait_for(
                lambda: any(
                    r.get("jobName") == again["metadata"]["name"] and r["phase"] == "Succeeded"
                    for r in cb(name)["status"].get("recentRuns", [])
                ),
                what="the rerun recorded",
            )
            time.sleep(1.0)  # the gateway has seen the run's end
            left = gw.get("/v1/credits", headers=auth).json()["credits"]
        classified = sum(
            int(r["counts"]["classified"])
            for r in cb(name)["status"]["recentRuns"]
            if r["phase"] == "Succeeded"
        )
        assert (10 - left, classified) == (5, 5), "the debits are the images classified"
    finally:
        operator.process.stop()
