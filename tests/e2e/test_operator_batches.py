"""The real operator runs ClassificationBatches against the emulator, and a kubelet stand-in runs
the Jobs it builds: each completion index's container (command, arguments, environment, Secrets)
as a local process against the real SeaweedFS with the digits model, its termination message
reported back as the pod's status. One-off batches end with status, counts, an Event and a signed
webhook; a daily batch gets its CronJob, and ticks run the due dates in order."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e.conftest import Operator, start_operator
from harness.kubeapi_launch import append_pod_log, inject_fault
from harness.kubelet import Cluster, end_job, fail_job, finish_job, run_index, run_job_locally, start_pod
from harness.receiver import Receiver
from harness.wait import wait_for, wait_for_event
from kubernetes import client
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from kubeclassify.cli.services import S3Server
from kubeclassify.core import constants as c
from kubeclassify.core.model_card import ModelCard
from kubeclassify.core.progress import ShardProgress, duration_text
from kubeclassify.core.storage import ObjectStore
from kubeclassify.core.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, verify

GROUP, VERSION = c.GROUP, c.VERSION
CB, MD = c.PLURALS[c.CLASSIFICATION_BATCH], c.PLURALS[c.MODEL_DEPLOYMENT]
HOOK_SECRET = b"hook-secret-for-tests"
TODAY = dt.datetime.now(dt.UTC).date()  # the schedule's zone is UTC
DAY1, DAY2 = TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=1)


@pytest.fixture(scope="module")
def operator(kube_api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:  # type: ignore[no-untyped-def]
    running = start_operator(
        kube_api.kubeconfig,
        tmp_path_factory.mktemp("batch-operator"),
        webhook_allowed_networks='["127.0.0.0/8"]',
    )
    yield running
    running.process.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def stage(
    store: ObjectStore,
    bucket: str,
    digits_model: Path,
    s3_server: S3Server,
    api_client: client.ApiClient,
    namespace: str,
) -> dict[str, Any]:
    """The digits model in S3, 30 held-out digits on DAY1 plus one corrupt object, a manifest, the
    S3 Secret, and a ModelDeployment that points at them."""
    from sklearn.datasets import load_digits

    for path in digits_model.rglob("*"):
        if path.is_file():
            store.write(f"s3://{bucket}/models/digits/{path.relative_to(digits_model)}", path.read_bytes())
    digits = load_digits()
    pixels = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    rows = []
    for i in range(1600, 1630):
        path = f"images/{DAY1}/digit-{i}.png"
        store.write(f"s3://{bucket}/{path}", png(pixels[i]))
        rows.append({"filepath": path, "date": DAY1.isoformat(), "label": str(digits.target[i])})
    store.write(f"s3://{bucket}/images/{DAY1}/corrupt.png", os.urandom(200))
    rows.append({"filepath": f"images/{DAY1}/corrupt.png", "date": DAY1.isoformat(), "label": "x"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["filepath", "date", "label"])
    writer.writeheader()
    writer.writerows(rows)
    store.write(f"s3://{bucket}/manifest.csv", buf.getvalue().encode())

    cluster = Cluster(api_client, namespace)
    cluster.secret(
        "s3",
        {
            "AWS_ACCESS_KEY_ID": s3_server.access_key_id.encode(),
            "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key.encode(),
        },
    )
    cluster.secret("hook", {"secret": HOOK_SECRET}, {c.LABEL_WEBHOOK_SECRET: "true"})
    card = ModelCard.model_validate_json((digits_model / "model-card.json").read_text())
    md = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": "digits"},
        "spec": {
            "model": {"uri": f"s3://{bucket}/models/digits/"},
            "input": card.input.to_k8s(),
            "storage": {"secretName": "s3", "endpoint": s3_server.endpoint_url},
            "batching": {"maxBatchSize": 16},
        },
    }
    return {"bucket": bucket, "rows": rows, "cluster": cluster, "md": md}


def batch(name: str, bucket: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClassificationBatch",
        "metadata": {"name": name},
        "spec": {
            "modelRef": {"name": "digits"},
            "input": {"manifest": {"uri": f"s3://{bucket}/manifest.csv", "root": f"s3://{bucket}/"}},
            "output": {"uri": f"s3://{bucket}/results/{name}/{{date}}/predictions.csv"},
            "maxFailedFraction": 0.2,
            **spec,
        },
    }


def test_a_batch_runs_as_an_indexed_job_and_reports_back(
    operator: Operator, stage: dict[str, Any], store: ObjectStore, receiver: Receiver, tmp_path: Path
) -> None:
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    webhook = {"url": receiver.url, "secretName": "hook"}
    cluster.create(CB, batch("once", bucket, date=DAY1.isoformat(), parallelism=2, webhook=webhook))
    job = wait_for(lambda: cluster.jobs(), what="the batch's Job")[0]
    assert job["metadata"]["name"] == f"once-{DAY1:%Y%m%d}"
    assert (job["spec"]["completions"], job["spec"]["completionMode"]) == (2, "Indexed")
    assert job["metadata"]["ownerReferences"][0]["name"] == "once"
    assert wait_for(lambda: cluster.cb("once")["status"]["phase"] == "Running", what="Running")

    run_job_locally(cluster, job, tmp_path)
    status = wait_for(
        lambda: (s := cluster.cb("once")["status"])["phase"] == "Succeeded" and s,
        timeout=60,
        what="Succeeded",
    )
    assert status["counts"] == {"total": 31, "classified": 30, "failed": 1, "skipped": 0}
    assert status["outputUri"] == f"s3://{bucket}/results/once/{DAY1}/predictions.csv"
    rows = list(csv.DictReader(io.StringIO(store.read(status["outputUri"]).decode())))
    truth = {r["filepath"]: r["label"] for r in stage["rows"]}
    right = sum(1 for r in rows if r["label"] == truth[r["source"].removeprefix(f"s3://{bucket}/")])
    assert len(rows) == 31 and right >= 27, f"{right}/30 digits right"
    wait_for_event(lambda: cluster.events("once"), ("Normal", "Succeeded"))
    metrics = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(
            urllib.request.urlopen(operator.metrics_url).read().decode()
        )
        for sample in family.samples
    }
    assert metrics[("kubeclassify_batch_images_total", (("outcome", "classified"),))] >= 30
    assert metrics[("kubeclassify_batch_runs_total", (("result", "Succeeded"),))] >= 1
    assert not any(
        name == "kubeclassify_batch_progress_ratio" for name, labels in metrics if ("batch", "once") in labels
    )

    headers, body = wait_for(lambda: receiver.received, what="the webhook")[0]
    assert verify(HOOK_SECRET, headers[SIGNATURE_HEADER], body)
    assert headers[DELIVERY_HEADER] == f"{cluster.ns}.{job['metadata']['name']}"
    sent = json.loads(body)
    assert (sent["batch"], sent["phase"], sent["counts"]["classified"], sent["date"]) == (
        "once",
        "Succeeded",
        30,
        DAY1.isoformat(),
    )
    status = wait_for(lambda: (s := cluster.cb("once")["status"])["webhook"].get("delivered") and s)
    assert status["webhook"]["statusCode"] == 204 and status["recentRuns"][-1]["webhook"]["delivered"]


def test_a_running_batch_shows_its_progress_speed_and_eta(
    operator: Operator, stage: dict[str, Any], tmp_path: Path
) -> None:
    """Progress while a run goes, read from its pods: a finished shard's summary plus the last
    progress line of a running shard's log; the estimate goes when the run ends."""
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    cluster.create(CB, batch("progress", bucket, date=DAY1.isoformat(), parallelism=2))
    job = wait_for(
        lambda: [
            j for j in cluster.jobs() if j["metadata"]["labels"][c.LABEL_CLASSIFICATION_BATCH] == "progress"
        ],
        what="the Job",
    )[0]
    first = start_pod(cluster, job, 0)
    assert run_index(cluster, job, 0, first, tmp_path) == 0
    counts = json.loads((tmp_path / f"{job['metadata']['name']}-0.termination").read_text())["counts"]
    second = start_pod(cluster, job, 1)
    noise = json.dumps({"level": "WARNING", "message": "progress is a word in other lines too"})
    now = dt.datetime.now(dt.UTC)
    append_pod_log(
        cluster.url, cluster.ns, second, ShardProgress(1, 3, 0, None, 1.5).line(now) + "\n" + noise + "\n"
    )
    done0 = counts["classified"] + counts["failed"]
    status = wait_for(
        lambda: (s := cluster.cb("progress")["status"]).get("progress") == f"{done0 + 3}/?" and s,
        what="progress before the running shard's total is known",
    )
    assert status["phase"] == "Running" and status["imagesPerSecond"] == 1.5 and "remaining" not in status

    append_pod_log(cluster.url, cluster.ns, second, ShardProgress(1, 4, 1, 12, 2.0).line(now) + "\n")
    total = counts["total"] + 12
    status = wait_for(
        lambda: (s := cluster.cb("progress")["status"]).get("progress") == f"{done0 + 4}/{total}" and s,
        what="progress with the total",
    )
    assert status["imagesPerSecond"] == 2.0
    assert status["remaining"] == duration_text((total - done0 - 4) / 2.0)  # e.g. 4s
    assert status["counts"] == {
        "total": total,
        "classified": done0 + 4 - counts["failed"] - 1,
        "failed": counts["failed"] + 1,
        "skipped": 0,
    }
    eta = dt.datetime.fromisoformat(status["estimatedCompletionTime"])
    assert now < eta < dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)

    assert run_index(cluster, job, 1, second, tmp_path) == 0
    finish_job(cluster, job, failed=False)
    status = wait_for(
        lambda: (s := cluster.cb("progress")["status"])["phase"] == "Succeeded" and s, what="Succeeded"
    )
    assert status["progress"] == "31/31" and status["counts"]["total"] == 31
    assert not {"imagesPerSecond", "remaining", "estimatedCompletionTime"} & set(status)


@pytest.mark.calendar
def test_a_daily_batch_ticks_through_the_due_dates_in_order(
    operator: Operator,
    stage: dict[str, Any],
    store: ObjectStore,
    kube_api,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    schedule = {"cron": "30 1 * * *", "timeZone": "UTC", "startDate": DAY1.isoformat(), "catchUp": True}
    cluster.create(CB, batch("daily", bucket, schedule=schedule))
    cron = wait_for(lambda: cluster.batch.list_namespaced_cron_job(cluster.ns).items, what="the CronJob")[0]
    assert (cron.spec.schedule, cron.spec.time_zone, cron.spec.concurrency_policy) == (
        "30 1 * * *",
        "UTC",
        "Forbid",
    )
    role = cluster.rbac.read_namespaced_role(
        cron.spec.job_template.spec.template.spec.service_account_name, cluster.ns
    )
    assert role.rules[0].resource_names == ["daily"] and role.rules[0].verbs == ["get", "patch"]
    assert wait_for(lambda: cluster.cb("daily")["status"]["phase"] == "Scheduled", what="Scheduled")
    assert cluster.jobs() == [], "nothing runs before the first tick"

    # What the CronJob's pod runs:
    env = dict(os.environ, KUBECONFIG=str(kube_api.kubeconfig), NAMESPACE=cluster.ns)
    tick = [sys.executable, "-m", "kubeclassify.core.cli", "operator", "tick", "daily"]
    subprocess.run(tick, env=env, check=True, capture_output=True, timeout=60)
    first = wait_for(lambda: cluster.jobs(), what="the first dated Job")
    assert [j["metadata"]["name"] for j in first] == [f"daily-{DAY1:%Y%m%d}"]
    run_job_locally(cluster, first[0], tmp_path)

    # Catching up: the next date's Job starts when the first ends; DAY2 has no images.
    second = wait_for(
        lambda: (js := cluster.jobs()) and len(js) == 2 and js, timeout=60, what="the second Job"
    )
    job2 = next(j for j in second if j["metadata"]["name"] == f"daily-{DAY2:%Y%m%d}")
    run_job_locally(cluster, job2, tmp_path)
    status = wait_for(
        lambda: (s := cluster.cb("daily")["status"]).get("lastProcessedDate") == DAY2.isoformat() and s,
        timeout=60,
        what="DAY2 done",
    )
    assert status["phase"] == "Scheduled"
    assert [(r["date"], r["phase"], r["counts"]["total"]) for r in status["recentRuns"]] == [
        (DAY1.isoformat(), "Succeeded", 31),
        (DAY2.isoformat(), "Succeeded", 0),
    ]
    assert status["nextDate"] == TODAY.isoformat()
    events = wait_for(lambda: (e := cluster.events("daily")) and ("Normal", "NoImages") in e and e)
    assert events.count(("Normal", "JobCreated")) == 2

    subprocess.run(tick, env=env, check=True, capture_output=True, timeout=60)  # nothing is due now
    time.sleep(2)
    assert len(cluster.jobs()) == 2

    # Rerunning one date is one annotation: a replacing run of DAY1.
    rerun = {"metadata": {"annotations": {c.ANNOTATION_RERUN_DATE: DAY1.isoformat()}}}
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "daily", rerun)
    third = wait_for(
        lambda: [j for j in cluster.jobs() if "-r" in j["metadata"]["name"][-12:]], what="the rerun's Job"
    )[0]
    assert third["metadata"]["name"].startswith(f"daily-{DAY1:%Y%m%d}-r")
    run_job_locally(cluster, third, tmp_path)
    status = wait_for(
        lambda: len((s := cluster.cb("daily")["status"])["recentRuns"]) == 3 and s,
        timeout=60,
        what="the rerun recorded",
    )
    assert (status["recentRuns"][-1]["date"], status["recentRuns"][-1]["counts"]["total"]) == (
        DAY1.isoformat(),
        31,
    )
    assert status["lastProcessedDate"] == DAY2.isoformat() and status["nextDate"] == TODAY.isoformat()
    success = json.loads(store.read(f"s3://{bucket}/results/daily/{DAY1}/_SUCCESS"))
    assert success["run"] == third["metadata"]["name"].rsplit("-", 1)[1]

    bad = {"metadata": {"annotations": {c.ANNOTATION_RERUN_DATE: "last tuesday"}}}
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "daily", bad)
    assert ("Warning", "InvalidRerunDate") in wait_for(
        lambda: (e := cluster.events("daily")) and ("Warning", "InvalidRerunDate") in e and e
    )
    assert len(cluster.jobs()) == 3, "a bad rerun date starts nothing"


def test_a_missing_model_deployment_or_a_bad_spec_is_a_condition(
    operator: Operator, stage: dict[str, Any]
) -> None:
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(CB, batch("early", bucket, date=DAY1.isoformat()))
    status = wait_for(
        lambda: (s := cluster.cb("early").get("status")) and s["conditions"] and s, what="a condition"
    )
    assert status["conditions"][0]["reason"] == "ModelDeploymentNotFound"
    wait_for_event(lambda: cluster.events("early"), ("Warning", "ModelDeploymentNotFound"))
    cluster.create(MD, stage["md"])
    wait_for(lambda: cluster.jobs(), timeout=30, what="the Job once the ModelDeployment exists")

    # A schedule whose output has no {date} would overwrite one file daily: the model refuses it.
    bad = batch("bad", bucket, schedule={"cron": "@daily"})
    bad["spec"]["output"]["uri"] = f"s3://{bucket}/results/all.csv"
    cluster.create(CB, bad)
    status = wait_for(
        lambda: (s := cluster.cb("bad").get("status")) and s.get("phase") == "Failed" and s, what="Failed"
    )
    assert (
        status["conditions"][0]["reason"] == "InvalidSpec" and "{date}" in status["conditions"][0]["message"]
    )
    assert cluster.events("bad") == [("Warning", "InvalidSpec")]


def test_a_restart_creates_no_second_job_and_deleting_the_batch_stops_its_job(
    kube_api,
    stage: dict[str, Any],
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    cluster.create(CB, batch("restarted", bucket, date=DAY1.isoformat(), parallelism=3))  # no operator yet
    first = start_operator(kube_api.kubeconfig, tmp_path / "first")
    try:
        job = wait_for(lambda: cluster.jobs(), what="the Job")[0]
    finally:
        first.process.stop()
    second = start_operator(kube_api.kubeconfig, tmp_path / "second")
    try:
        time.sleep(3)  # room for a wrong second Job
        jobs = cluster.jobs()
        assert [j["metadata"]["name"] for j in jobs] == [job["metadata"]["name"]]
        assert jobs[0]["metadata"]["resourceVersion"] == job["metadata"]["resourceVersion"]
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "restarted")
        wait_for(lambda: cluster.jobs() == [], what="the Job gone with its batch")
    finally:
        second.process.stop()


def condition_reason(body: dict[str, Any], type_: str) -> str | None:
    return next((x["reason"] for x in body["status"].get("conditions", []) if x["type"] == type_), None)


def test_a_deleted_job_fails_its_run_and_a_rerun_starts_another(
    operator: Operator, stage: dict[str, Any]
) -> None:
    """Deleting a running batch's Job must not leave the batch Running for ever: the run fails with
    JobDeleted, no Job is made behind the user's back, and the rerun annotation starts one."""
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    cluster.create(CB, batch("gone", bucket, date=DAY1.isoformat()))
    job = wait_for(lambda: cluster.jobs(), what="the Job")[0]["metadata"]["name"]
    wait_for(lambda: cluster.cb("gone")["status"]["phase"] == "Running", what="Running")
    cluster.batch.delete_namespaced_job(job, cluster.ns, propagation_policy="Background")
    body = wait_for(lambda: (b := cluster.cb("gone"))["status"]["phase"] == "Failed" and b, what="Failed")
    assert condition_reason(body, "Succeeded") == "JobDeleted"
    wait_for_event(lambda: cluster.events("gone"), ("Warning", "JobDeleted"))
    time.sleep(3)
    assert cluster.jobs() == [], "the operator does not recreate a Job the user deleted"

    rerun = {"metadata": {"annotations": {c.ANNOTATION_RERUN_DATE: DAY1.isoformat()}}}
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "gone", rerun)
    again = wait_for(lambda: cluster.jobs(), what="the rerun's Job")[0]["metadata"]["name"]
    assert again == f"gone-{DAY1:%Y%m%d}-r1"
    body = wait_for(lambda: (b := cluster.cb("gone"))["status"]["phase"] == "Running" and b, what="Running")
    assert body["status"]["jobName"] == again


def test_a_job_deleted_while_the_operator_was_away_fails_its_run(
    kube_api,  # type: ignore[no-untyped-def]
    stage: dict[str, Any],
    tmp_path: Path,
) -> None:
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    cluster.create(CB, batch("away", bucket, date=DAY1.isoformat()))
    first = start_operator(kube_api.kubeconfig, tmp_path / "first", namespaces=json.dumps([cluster.ns]))
    try:
        job = wait_for(lambda: cluster.jobs(), what="the Job")[0]["metadata"]["name"]
        wait_for(lambda: cluster.cb("away")["status"]["phase"] == "Running", what="Running")
    finally:
        first.process.stop()
    cluster.batch.delete_namespaced_job(job, cluster.ns, propagation_policy="Background")
    second = start_operator(kube_api.kubeconfig, tmp_path / "second", namespaces=json.dumps([cluster.ns]))
    try:
        body = wait_for(lambda: (b := cluster.cb("away"))["status"]["phase"] == "Failed" and b, what="Failed")
        assert condition_reason(body, "Succeeded") == "JobDeleted"
    finally:
        second.process.stop()


def test_a_run_recorded_before_the_operator_stopped_starts_when_it_comes_back(
    kube_api,  # type: ignore[no-untyped-def]
    stage: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The operator stopped after recording a run (status.pendingRun: a daily batch's next date, as
    a run's end records it) and before making its Job: the next operator makes it. Found by the
    chaos tier: the catching-up batch waited for the next day's tick instead."""
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    schedule = {"cron": "30 1 * * *", "timeZone": "UTC", "startDate": DAY1.isoformat(), "catchUp": True}
    cluster.create(CB, batch("stopped", bucket, schedule=schedule))
    first = start_operator(kube_api.kubeconfig, tmp_path / "first", namespaces=json.dumps([cluster.ns]))
    try:
        wait_for(
            lambda: cluster.cb("stopped").get("status", {}).get("phase") == "Scheduled", what="Scheduled"
        )
    finally:
        first.process.stop()
    recorded = {
        "phase": "Scheduled",
        "pendingRun": {"id": f"stopped-{DAY2:%Y%m%d}", "date": DAY2.isoformat()},
    }
    recorded["lastProcessedDate"] = DAY1.isoformat()
    cluster.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, cluster.ns, CB, "stopped", {"status": recorded}
    )
    assert cluster.jobs() == []
    second = start_operator(kube_api.kubeconfig, tmp_path / "second", namespaces=json.dumps([cluster.ns]))
    try:
        job = wait_for(lambda: cluster.jobs(), what="the recorded run's Job")[0]
        assert job["metadata"]["name"] == f"stopped-{DAY2:%Y%m%d}"
        body = wait_for(
            lambda: (b := cluster.cb("stopped"))["status"]["phase"] == "Running" and b, what="Running"
        )
        assert (
            body["status"].get("pendingRun") is None and body["status"]["jobName"] == job["metadata"]["name"]
        )
    finally:
        second.process.stop()


def test_a_failed_status_write_during_a_rerun_makes_no_second_job(
    kube_api,  # type: ignore[no-untyped-def]
    operator: Operator,
    stage: dict[str, Any],
) -> None:
    """The API refuses one status write of a rerun: the retry finds the rerun's Job and makes no
    second one (two Jobs would write the same results). Asking again, with the same date, is a new
    rerun."""
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    cluster.create(CB, batch("twice", bucket, date=DAY1.isoformat()))
    end_job(cluster, wait_for(lambda: cluster.jobs(), what="the Job")[0]["metadata"]["name"])
    wait_for(lambda: cluster.cb("twice")["status"]["phase"] == "Succeeded", what="Succeeded")

    def rerun_jobs() -> list[str]:
        return sorted(j["metadata"]["name"] for j in cluster.jobs() if "-r" in j["metadata"]["name"])

    for attempt in (1, 2):
        inject_fault(kube_api.url, "PATCH", rf"/namespaces/{cluster.ns}/classificationbatches/twice/status$")
        rerun = {"metadata": {"annotations": {c.ANNOTATION_RERUN_DATE: DAY1.isoformat()}}}
        cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "twice", rerun)
        wait_for(
            lambda: (
                not (cluster.cb("twice")["metadata"].get("annotations") or {}).get(c.ANNOTATION_RERUN_DATE)
            ),
            timeout=60,
            what="the rerun taken",
        )
        time.sleep(5)  # two retry delays: room for a wrong second Job
        assert rerun_jobs() == [f"twice-{DAY1:%Y%m%d}-r{n}" for n in range(1, attempt + 1)]
        body = cluster.cb("twice")
        assert (body["status"]["phase"], body["status"]["jobName"]) == ("Running", rerun_jobs()[-1])
        end_job(cluster, rerun_jobs()[-1])
        wait_for(lambda: cluster.cb("twice")["status"]["phase"] == "Succeeded", what="the rerun done")


def test_a_spec_edit_during_a_run_applies_to_the_next_run(operator: Operator, stage: dict[str, Any]) -> None:
    """The running Job is left as it was made; the run records the generation it used, and the next
    run (a rerun) is made from the edited spec."""
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    cluster.create(CB, batch("edited", bucket, date=DAY1.isoformat()))
    job = wait_for(lambda: cluster.jobs(), what="the Job")[0]
    wait_for(lambda: cluster.cb("edited")["status"]["phase"] == "Running", what="Running")
    edit = {"spec": {"maxFailedFraction": 0.5}}
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "edited", edit)
    wait_for(lambda: cluster.cb("edited")["status"].get("observedGeneration") == 2, what="the edit seen")
    time.sleep(2)
    [same] = cluster.jobs()
    assert same["metadata"]["resourceVersion"] == job["metadata"]["resourceVersion"], (
        "the running Job is left"
    )
    end_job(cluster, same["metadata"]["name"])
    runs = wait_for(lambda: cluster.cb("edited")["status"].get("recentRuns"), what="the run recorded")
    assert [(r["jobName"], r["generation"]) for r in runs] == [(same["metadata"]["name"], 1)]

    rerun = {"metadata": {"annotations": {c.ANNOTATION_RERUN_DATE: DAY1.isoformat()}}}
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "edited", rerun)
    second = wait_for(
        lambda: [j for j in cluster.jobs() if j["metadata"]["name"].endswith("-r1")], what="r1"
    )[0]
    env = {e["name"]: e.get("value") for e in second["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env[c.ENV_BATCH])["spec"]["maxFailedFraction"] == 0.5
    end_job(cluster, second["metadata"]["name"])
    runs = wait_for(
        lambda: len(r := cluster.cb("edited")["status"]["recentRuns"]) == 2 and r, what="the rerun"
    )
    assert [r["generation"] for r in runs] == [1, 2]


def test_a_webhook_is_tried_again_by_the_operator_with_one_delivery_id(
    operator: Operator, stage: dict[str, Any]
) -> None:
    """The receiver holds its first answer, then answers 503 twice: the run's end is recorded while
    the receiver holds (no handler waits on it), the operator tries again on its own timer, the
    third try is delivered, and all three carry the same delivery id."""
    cluster, bucket = stage["cluster"], stage["bucket"]
    receiver = Receiver([503, 503], hold=True)
    try:
        cluster.create(MD, stage["md"])
        webhook = {"url": receiver.url, "secretName": "hook"}
        cluster.create(CB, batch("flaky", bucket, date=DAY1.isoformat(), webhook=webhook))
        job = wait_for(lambda: cluster.jobs(), what="the Job")[0]["metadata"]["name"]
        end_job(cluster, job)
        wait_for(lambda: cluster.cb("flaky")["status"]["phase"] == "Succeeded", what="Succeeded")
        wait_for(lambda: receiver.received, what="the first try")
        receiver.release.set()
        status = wait_for(
            lambda: (s := cluster.cb("flaky")["status"]).get("webhook", {}).get("delivered") and s,
            timeout=60,
            what="delivered",
        )
        assert (status["webhook"]["attempts"], status["webhook"]["statusCode"]) == (3, 204)
        assert [h[DELIVERY_HEADER] for h, _ in receiver.received] == [f"{cluster.ns}.{job}"] * 3
        assert len({body for _, body in receiver.received}) == 1, "the same payload on every try"
    finally:
        receiver.close()


def test_a_failed_date_is_tried_again_by_a_new_job_three_times_then_waits(
    operator: Operator, stage: dict[str, Any]
) -> None:
    """A scheduled date whose run failed runs again with a Job of its own (it reused the failed Job,
    and the batch stayed Running on it); after three failed runs in a row it waits, saying how to
    go on, and an edit to the batch gives it three more tries."""
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    schedule = {"cron": "30 1 * * *", "timeZone": "UTC", "startDate": DAY1.isoformat(), "catchUp": True}
    cluster.create(CB, batch("flaky", bucket, schedule=schedule))
    wait_for(lambda: cluster.cb("flaky").get("status", {}).get("phase") == "Scheduled", what="Scheduled")
    tick = {"metadata": {"annotations": {c.ANNOTATION_TICK: str(time.time())}}}
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "flaky", tick)
    names = [f"flaky-{DAY1:%Y%m%d}", f"flaky-{DAY1:%Y%m%d}-t2", f"flaky-{DAY1:%Y%m%d}-t3"]
    for i, name in enumerate(names):
        wait_for(lambda n=name: n in [j["metadata"]["name"] for j in cluster.jobs()], what=f"the Job {name}")
        assert len(cluster.jobs()) == i + 1
        fail_job(cluster, name)
    body = wait_for(
        lambda: condition_reason(b := cluster.cb("flaky"), "Ready") == "RetriesExhausted" and b,
        what="RetriesExhausted",
    )
    assert [r["jobName"] for r in body["status"]["recentRuns"]] == names
    assert body["status"]["phase"] == "Scheduled" and body["status"]["nextDate"] == DAY1.isoformat()
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "flaky", tick)
    time.sleep(2)
    assert len(cluster.jobs()) == 3, "no fourth try on a tick"

    edit = {"spec": {"maxFailedFraction": 0.3}}  # a new generation: three more tries
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "flaky", edit)
    tick = {"metadata": {"annotations": {c.ANNOTATION_TICK: str(time.time())}}}
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.ns, CB, "flaky", tick)
    wait_for(lambda: f"flaky-{DAY1:%Y%m%d}-t4" in [j["metadata"]["name"] for j in cluster.jobs()], what="t4")


def test_a_daily_batchs_cronjob_deleted_by_hand_is_made_again(
    operator: Operator, stage: dict[str, Any]
) -> None:
    """Without its CronJob a daily batch would never tick again, and say Scheduled all the while."""
    cluster, bucket = stage["cluster"], stage["bucket"]
    cluster.create(MD, stage["md"])
    schedule = {"cron": "30 1 * * *", "timeZone": "UTC", "startDate": TODAY.isoformat()}
    cluster.create(CB, batch("lostcron", bucket, schedule=schedule))

    def cronjob() -> list[Any]:
        crons = cluster.batch.list_namespaced_cron_job(cluster.ns).items
        return [j for j in crons if j.metadata.labels.get(c.LABEL_CLASSIFICATION_BATCH) == "lostcron"]

    first = wait_for(cronjob, what="the CronJob")[0]
    cluster.batch.delete_namespaced_cron_job(first.metadata.name, cluster.ns)
    again = wait_for(
        lambda: [j for j in cronjob() if j.metadata.uid != first.metadata.uid], what="the CronJob made again"
    )[0]
    assert (again.metadata.name, again.spec.schedule) == (first.metadata.name, "30 1 * * *")
    assert again.metadata.owner_references[0].name == "lostcron"
