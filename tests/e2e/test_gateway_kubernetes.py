"""The gateway with models from the Kubernetes API: the ModelDeployments of its namespace (in the
emulator) name the models, their status gives the predictor's URL (here a real predictor serving
the digits model), and a ModelDeployment that is not ready is a 503, not a crash."""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from e2e.conftest import start_operator
from fastapi.testclient import TestClient
from harness.gateway import TOKEN_SECRET, fresh_redis_url, sign_up
from harness.kubelet import ready_inference_service
from harness.schemas import load_crds, schema_errors
from harness.wait import wait_for
from kubernetes import client
from PIL import Image
from pydantic import SecretStr

from kubeclassify.cli.services import PredictorServer, RedisServer
from kubeclassify.core import constants as c
from kubeclassify.core.resources import ClassificationBatch
from kubeclassify.core.resources.classification_batch import Admission, ManifestInput, admission_of
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.config import GatewayConfig, GatewaySettings


def test_models_and_predictors_come_from_model_deployments(
    kube_api,  # type: ignore[no-untyped-def]
    api_client: client.ApiClient,
    namespace: str,
    digits_predictor: PredictorServer,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    plural = c.PLURALS[c.MODEL_DEPLOYMENT]
    for name, description in (("digits", "handwritten digits"), ("pending", None)):
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.MODEL_DEPLOYMENT,
            "metadata": {"name": name},
            "spec": {
                "model": {"uri": f"s3://models/{name}/", "description": description, "labels": ["a", "b"]}
            },
        }
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, body)
    status = {"status": {"phase": "Ready", "url": digits_predictor.url, "stableVersion": "v7"}}
    custom.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, namespace, plural, "digits", status)

    config = GatewayConfig(
        registration="open",
        starting_credits=100,
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(TOKEN_SECRET),
        models_source="kubernetes",
        namespace=namespace,
        kubeconfig=str(kube_api.kubeconfig),
        default_model="digits",
        images_uri=f"s3://{bucket}/images",
    )
    from sklearn.datasets import load_digits

    digits = load_digits()
    buf = io.BytesIO()
    Image.fromarray((digits.images[1750] * (255.0 / 16.0)).round().astype(np.uint8)).save(buf, format="PNG")
    with TestClient(create_app(GatewaySettings(gateway=config, s3=s3_settings))) as gw:
        auth = {"Authorization": f"Bearer {sign_up(gw)}"}
        models = gw.get("/v1/models", headers=auth).json()
        assert [(m["name"], m["ready"], m["default"], m["version"]) for m in models] == [
            ("digits", True, True, "v7"),
            ("pending", False, False, None),
        ]
        assert models[0]["description"] == "handwritten digits"
        upload = {"file": ("d.png", buf.getvalue(), "image/png")}
        done = gw.post("/v1/classify", files=upload, headers=auth)
        assert done.status_code == 200 and done.json()["label"] == str(digits.target[1750])
        not_ready = gw.post("/v1/classify", files=upload, data={"model": "pending"}, headers=auth)
        assert not_ready.status_code == 503 and "not ready" in not_ready.json()["detail"]
        assert gw.post("/v1/classify", files=upload, data={"model": "nope"}, headers=auth).status_code == 404
        assert gw.get("/v1/credits", headers=auth).json()["credits"] == 99, (
            "only the classified image is paid"
        )
        assert gw.get("/readyz").status_code == 200


def test_readiness_needs_the_kubernetes_api_when_models_come_from_it(
    redis_server: RedisServer, s3_settings: S3Settings, bucket: str, tmp_path: Path
) -> None:
    from harness.kubeapi_launch import kubeconfig_for

    from kubeclassify.cli.processes import free_port

    config = GatewayConfig(
        registration="open",
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(TOKEN_SECRET),
        models_source="kubernetes",
        kubeconfig=str(kubeconfig_for(f"http://127.0.0.1:{free_port()}", tmp_path / "kubeconfig")),
        images_uri=f"s3://{bucket}/images",
    )
    with TestClient(create_app(GatewaySettings(gateway=config, s3=s3_settings))) as gw:
        ready = gw.get("/readyz")
    assert ready.status_code == 503 and ready.json()["models"]


def kubernetes_backend(
    kube_api: Any,
    custom: client.CustomObjectsApi,
    namespace: str,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
) -> GatewaySettings:
    """Settings for a gateway whose batches are ClassificationBatches, with a ModelDeployment `digits`."""
    md = {
        "apiVersion": c.API_VERSION,
        "kind": c.MODEL_DEPLOYMENT,
        "metadata": {"name": "digits"},
        "spec": {"model": {"uri": "s3://models/digits/"}},
    }
    custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURALS[c.MODEL_DEPLOYMENT], md)
    config = GatewayConfig(
        registration="open",
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(TOKEN_SECRET),
        models_source="kubernetes",
        batch_backend="kubernetes",
        namespace=namespace,
        kubeconfig=str(kube_api.kubeconfig),
        default_model="digits",
        images_uri=f"s3://{bucket}/images",
        batches_uri=f"s3://{bucket}/batches",
        starting_credits=10,
    )
    return GatewaySettings(gateway=config, s3=s3_settings)


def manifest(store: ObjectStore, bucket: str, days: dict[dt.date, int]) -> ManifestInput:
    """A manifest listing `days[d]` images for each date `d` (the images themselves are not there)."""
    rows = ["filepath,date,label"]
    for day, count in days.items():
        rows += [f"images/{day}/{i}.png,{day},0" for i in range(count)]
    store.write(f"s3://{bucket}/data/metadata.csv", ("\n".join(rows) + "\n").encode())
    return ManifestInput(uri=f"s3://{bucket}/data/metadata.csv", root=f"s3://{bucket}/data/")


def serve_digits(custom: client.CustomObjectsApi, namespace: str, url: str = "http://digits.example") -> None:
    """The operator's InferenceService for `digits` ready at `url`, and its ModelDeployment Ready."""
    ready_inference_service(custom, namespace, "digits", url)


def test_batches_become_classification_batches_and_settle_once(
    kube_api,  # type: ignore[no-untyped-def]
    api_client: client.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    settings = kubernetes_backend(kube_api, custom, namespace, redis_server, s3_settings, bucket)
    csv_body = b"url\nhttps://images.example.com/a.png\nhttps://images.example.com/b.png\n"
    # Two replicas see the same end; the unused credit comes back once.
    with TestClient(create_app(settings)) as gw, TestClient(create_app(settings)) as replica:
        auth = {"Authorization": f"Bearer {sign_up(gw)}"}
        created = gw.post("/v1/batches", files={"file": ("b.csv", csv_body, "text/csv")}, headers=auth)
        assert created.status_code == 201, created.text
        name = created.json()["name"]
        assert name.startswith("alice-") and created.json()["state"] == "Pending"

        plural = c.PLURALS[c.CLASSIFICATION_BATCH]
        body = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, name)
        assert body["metadata"]["labels"][c.LABEL_OWNER] == "alice"
        assert schema_errors(body, load_crds()) == []
        batch = ClassificationBatch.model_validate(body)  # what the operator reads
        assert batch.spec.model_ref.name == "digits" and batch.spec.input.urls is not None
        assert batch.spec.output.uri == f"s3://{bucket}/batches/alice/{name}/results.csv"
        assert batch.spec.max_failed_fraction == 0.05  # the gateway's MAX_FAILED_FRACTION: 5%
        assert gw.get("/v1/credits", headers=auth).json()["credits"] == 8

        status = {
            "status": {
                "phase": "Succeeded",
                "counts": {"total": 2, "classified": 1, "failed": 1, "skipped": 0},
                "outputUri": batch.spec.output.uri,
            }
        }
        custom.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, namespace, plural, name, status)
        info = wait_for(
            lambda: (b := gw.get(f"/v1/batches/{name}", headers=auth).json())["state"] == "Succeeded" and b,
            what="the gateway to see the batch end",
        )
        assert info["counts"] == {"total": 2, "classified": 1, "failed": 1, "skipped": 0, "unadmitted": None}
        time.sleep(1.0)  # both replicas have seen the event since
        assert replica.get("/v1/credits", headers=auth).json()["credits"] == 9

        # A ClassificationBatch deleted by hand before its end: the batch fails and says why.
        second = gw.post("/v1/batches", files={"file": ("b.csv", csv_body, "text/csv")}, headers=auth)
        other = second.json()["name"]
        running = {"status": {"phase": "Running"}}
        custom.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, namespace, plural, other, running)
        wait_for(lambda: gw.get(f"/v1/batches/{other}", headers=auth).json()["state"] == "Running")
        custom.delete_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, other)
        gone = wait_for(
            lambda: (b := gw.get(f"/v1/batches/{other}", headers=auth).json())["state"] == "Failed" and b,
            what="the batch to fail",
        )
        assert "was deleted" in gone["message"]
        assert gw.get("/v1/credits", headers=auth).json()["credits"] == 9, "its reserve came back"


def test_a_running_batch_shows_its_runs_progress_and_a_cancel_deletes_its_resource(
    kube_api,  # type: ignore[no-untyped-def]
    api_client: client.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    settings = kubernetes_backend(kube_api, custom, namespace, redis_server, s3_settings, bucket)
    csv_body = b"url\n" + b"".join(b"https://images.example.com/%d.png\n" % i for i in range(4))
    plural = c.PLURALS[c.CLASSIFICATION_BATCH]
    with TestClient(create_app(settings)) as gw:
        auth = {"Authorization": f"Bearer {sign_up(gw)}"}
        name = gw.post("/v1/batches", files={"file": ("b.csv", csv_body, "text/csv")}, headers=auth).json()[
            "name"
        ]
        assert gw.get("/v1/credits", headers=auth).json()["credits"] == 10 - 4
        # The operator's status while the run goes (its counts from the pods' progress lines).
        running = {
            "phase": "Running",
            "counts": {"total": 4, "classified": 2, "failed": 1},
            "imagesPerSecond": 1.5,
        }
        custom.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, namespace, plural, name, {"status": running}
        )
        info = wait_for(
            lambda: (
                (b := gw.get(f"/v1/batches/{name}", headers=auth).json())["counts"]["classified"] == 2 and b
            ),
            what="the gateway to show the run's progress",
        )
        assert (
            info["state"] == "Running" and info["counts"]["failed"] == 1 and info["images_per_second"] == 1.5
        )
        left = dt.datetime.fromisoformat(info["estimated_completion_time"]) - dt.datetime.now(dt.UTC)
        assert dt.timedelta(0) < left <= dt.timedelta(seconds=2), "one image left at 1.5 a second"
        assert gw.delete(f"/v1/batches/{name}", headers=auth).status_code == 409

        cancelled = gw.post(f"/v1/batches/{name}/cancel", headers=auth)
        assert cancelled.status_code == 200, cancelled.text
        assert (cancelled.json()["state"], cancelled.json()["message"]) == (
            "Failed",
            "cancelled by its owner",
        )
        assert cancelled.json()["counts"]["classified"] == 2
        listed = custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural)["items"]
        assert name not in [item["metadata"]["name"] for item in listed], "its resource (and Job) went"
        time.sleep(1.0)  # the watch has seen the deletion: it does not end the batch a second time
        after = gw.get(f"/v1/batches/{name}", headers=auth).json()
        assert after["message"] == "cancelled by its owner"
        store, results = ObjectStore(s3_settings), f"s3://{bucket}/batches/alice/{name}/results.csv"
        store.write(results, b"id,label\n0,7\n")  # as a worker stopped a moment late would have
        refused = gw.get(f"/v1/batches/{name}/results.csv", headers=auth)
        assert refused.status_code == 404 and "was cancelled" in refused.text
        assert gw.get("/v1/credits", headers=auth).json()["credits"] == 10 - 2, "two classified, two back"
        assert gw.delete(f"/v1/batches/{name}", headers=auth).status_code == 204
        assert gw.get(f"/v1/batches/{name}", headers=auth).status_code == 404


def test_schedules_become_scheduled_classification_batches_whose_runs_the_gateway_admits(
    kube_api,  # type: ignore[no-untyped-def]
    api_client: client.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    settings = kubernetes_backend(kube_api, custom, namespace, redis_server, s3_settings, bucket)
    days = {dt.date(2026, 11, 20): 2, dt.date(2026, 11, 21): 1, dt.date(2026, 11, 22): 50}
    settings.gateway.manifest = manifest(ObjectStore(s3_settings), bucket, days)
    plural = c.PLURALS[c.CLASSIFICATION_BATCH]
    with TestClient(create_app(settings)) as gw, TestClient(create_app(settings)) as replica:
        auth = {"Authorization": f"Bearer {sign_up(gw)}"}
        created = gw.post(
            "/v1/schedules", json={"cron": "30 1 * * *", "start_date": "2026-11-20"}, headers=auth
        )
        assert created.status_code == 201, created.text
        name = created.json()["name"]
        hooked = {"cron": "30 1 * * *", "webhook_url": "https://hooks.example.com/x"}
        assert gw.post("/v1/schedules", json=hooked, headers=auth).status_code == 422
        body = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, name)
        assert schema_errors(body, load_crds()) == []
        batch = ClassificationBatch.model_validate(body)
        assert batch.spec.schedule is not None and batch.spec.schedule.cron == "30 1 * * *"
        assert batch.spec.output.uri == f"s3://{bucket}/batches/alice/{name}/{{date}}/results.csv"

        edit = {"cron": "0 4 * * *", "time_zone": "Europe/Berlin", "catch_up": True, "model": "digits"}
        edited = gw.patch(f"/v1/schedules/{name}", json=edit, headers=auth)
        assert edited.status_code == 200, edited.text
        assert (edited.json()["cron"], edited.json()["time_zone"]) == ("0 4 * * *", "Europe/Berlin")
        cr = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, name)
        assert schema_errors(cr, load_crds()) == []
        assert {k: cr["spec"]["schedule"][k] for k in ("cron", "timeZone", "catchUp", "startDate")} == {
            "cron": "0 4 * * *", "timeZone": "Europe/Berlin", "catchUp": True, "startDate": "2026-11-20"
        }  # fmt: skip
        assert (
            gw.patch(
                f"/v1/schedules/{name}", json={"webhook_url": "https://h.example/x"}, headers=auth
            ).status_code
            == 422
        )

        fired = gw.post(f"/v1/schedules/{name}/fire", headers=auth)
        assert fired.status_code == 202 and fired.json() == {"schedule": name, "date": None, "batch": name}
        cr = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, name)
        assert c.ANNOTATION_TICK in cr["metadata"]["annotations"], "ticked as its CronJob ticks it"

        assert gw.post(f"/v1/schedules/{name}/pause", headers=auth).json()["paused"]
        cr = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, name)
        assert cr["spec"]["schedule"]["suspend"] is True
        assert not gw.post(f"/v1/schedules/{name}/resume", headers=auth).json()["paused"]
        ran = gw.post(f"/v1/schedules/{name}/run", json={"date": "2026-11-21"}, headers=auth)
        assert ran.status_code == 202 and ran.json()["batch"] == name
        cr = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, name)
        assert cr["metadata"]["annotations"][c.ANNOTATION_RERUN_DATE] == "2026-11-21"

        # A run waits for admission, as the operator records it: the replicas reserve its credits
        # once, for the images the manifest lists for its date, and admit it alike.
        def wait_with(run_id: str, date: str) -> None:
            pending = {"phase": "AwaitingAdmission", "pendingRun": {"id": run_id, "date": date}}
            custom.patch_namespaced_custom_object_status(
                c.GROUP, c.VERSION, namespace, plural, name, {"status": pending}
            )

        def answer(run_id: str) -> Admission:
            def answered() -> Admission | None:
                body = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, name)
                found = admission_of(body["metadata"])
                return found if found is not None and found.run == run_id else None

            return wait_for(answered, what=f"the gateway to answer {run_id}")  # type: ignore[no-any-return]

        wait_with(f"{name}-20261120", "2026-11-20")
        assert answer(f"{name}-20261120") == Admission(run=f"{name}-20261120", images=2)
        time.sleep(1.0)  # both replicas have seen it
        assert replica.get("/v1/credits", headers=auth).json()["credits"] == 10 - 2

        # Its end, seen by both replicas, is settled once: 1 classified, 1 credit back.
        counts = {"total": 2, "classified": 1, "failed": 1, "skipped": 0}
        ended = {"date": "2026-11-20", "phase": "Succeeded", "jobName": f"{name}-20261120", "counts": counts}
        status = {"phase": "Scheduled", "lastProcessedDate": "2026-11-20", "recentRuns": [ended]}
        custom.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, namespace, plural, name, {"status": status}
        )
        wait_for(
            lambda: gw.get(f"/v1/schedules/{name}", headers=auth).json()["last_date"] == "2026-11-20",
            what="the schedule's last date",
        )
        time.sleep(1.0)
        assert replica.get("/v1/credits", headers=auth).json()["credits"] == 10 - 1
        runs = gw.get(f"/v1/schedules/{name}/runs", headers=auth).json()
        assert [(r["date"], r["batch"], r["state"], r["counts"]["classified"]) for r in runs] == [
            ("2026-11-20", f"{name}-20261120", "Succeeded", 1)
        ]

        store = ObjectStore(s3_settings)
        for day, text in (
            ("2026-11-21", b"id,label\r\n0,7\r\n1,1\r\n"),
            ("2026-11-20", b"id,label\r\n0,3\r\n"),
        ):
            store.write(f"s3://{bucket}/batches/alice/{name}/{day}/results.csv", text)
        merged = gw.get(f"/v1/schedules/{name}/results.csv", headers=auth)
        assert merged.text == "id,label\r\n0,3\r\n0,7\r\n1,1\r\n"

        # A run its owner cannot pay for is refused, and the schedule suspended, with the reason.
        wait_with(f"{name}-20261122", "2026-11-22")
        assert answer(f"{name}-20261122").refused is not None
        info = wait_for(
            lambda: (s := gw.get(f"/v1/schedules/{name}", headers=auth).json())["paused"] and s,
            what="the schedule to be paused",
        )
        assert "out of credits" in info["reason"]
        cr = custom.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, name)
        assert cr["spec"]["schedule"]["suspend"] is True

        assert gw.delete(f"/v1/schedules/{name}", headers=auth).status_code == 204
        assert gw.get(f"/v1/schedules/{name}", headers=auth).status_code == 404
        left = custom.list_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural)["items"]
        assert name not in [item["metadata"]["name"] for item in left], "its ClassificationBatch went too"


def test_a_failed_batch_shows_the_operators_reason(
    kube_api,  # type: ignore[no-untyped-def]
    api_client: client.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
    tmp_path: Path,
) -> None:
    """The real operator ends a gateway batch's run as failed (its Job ran past its deadline): the
    REST API shows why, in the words of the operator's Succeeded=False condition."""
    custom = client.CustomObjectsApi(api_client)
    settings = kubernetes_backend(kube_api, custom, namespace, redis_server, s3_settings, bucket)
    operator = start_operator(
        kube_api.kubeconfig,
        tmp_path / "operator",
        namespaces=f'["{namespace}"]',
        gateway_images_uri=f"s3://{bucket}/images",
    )
    try:
        serve_digits(custom, namespace)
        with TestClient(create_app(settings)) as gw:
            auth = {"Authorization": f"Bearer {sign_up(gw)}"}
            csv_body = b"url\nhttps://images.example.com/a.png\n"
            created = gw.post("/v1/batches", files={"file": ("b.csv", csv_body, "text/csv")}, headers=auth)
            assert created.status_code == 201, created.text
            name = created.json()["name"]
            jobs = client.BatchV1Api(api_client)
            job = wait_for(lambda: jobs.list_namespaced_job(namespace).items, what="the Job")[0].metadata.name
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            failed = {
                "type": "Failed",
                "status": "True",
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline",
                "lastTransitionTime": now,
            }
            jobs.patch_namespaced_job_status(job, namespace, {"status": {"conditions": [failed]}})
            info = wait_for(
                lambda: (b := gw.get(f"/v1/batches/{name}", headers=auth).json())["state"] == "Failed" and b,
                timeout=60,
                what="the gateway to see the batch fail",
            )
            assert "longer than specified deadline" in info["message"], info
    finally:
        operator.process.stop()
