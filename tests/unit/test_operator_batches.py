"""ClassificationBatch → Jobs and the daily CronJob: the builders (validated against the Kubernetes
schemas), which date a tick processes, and a run's outcome read from its Job and pods."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import kubernetes_validate
import pytest

from kubeclassify.core import constants as c
from kubeclassify.core.progress import ShardProgress, duration_text, last_progress
from kubeclassify.core.resources.classification_batch import ENDED_PHASES, ClassificationBatch, ScheduleSpec
from kubeclassify.core.resources.model_deployment import ModelDeployment, ModelSpec
from kubeclassify.core.schedule import next_date, upcoming_date
from kubeclassify.operator.builders.batch import batch_job, job_name, tick_access, tick_cronjob
from kubeclassify.operator.builders.batch_status import RunOutcome, job_outcome, run_progress
from kubeclassify.operator.config import OperatorConfig

CONFIG = OperatorConfig(
    inference_image="registry.example/inference:1", operator_image="registry.example/operator:1"
)
STABLE = ModelSpec(uri="s3://models/digits/v1/")
RUN_TIME = dt.datetime(2026, 11, 22, 1, 30, tzinfo=dt.UTC)
K8S = kubernetes_validate.latest_version()


def batch(name: str = "daily", **spec: Any) -> ClassificationBatch:
    body = {
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {
            "modelRef": {"name": "digits"},
            "input": {"manifest": {"uri": "s3://data/manifest.csv", "root": "s3://data/"}},
            "output": {"uri": "s3://results/{date}/predictions.csv"},
            **spec,
        },
    }
    return ClassificationBatch.model_validate(body)


def model(**spec: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {"metadata": {"name": "digits"}, "spec": {"model": {"uri": "s3://models/digits/v2/"}, **spec}}
    )


def valid(obj: dict[str, Any]) -> dict[str, Any]:
    kubernetes_validate.validate(obj, K8S, strict=True)
    return obj


def test_a_run_is_an_indexed_job_with_one_shard_per_index() -> None:
    cb = batch(parallelism=4, retries=3, deadlineSeconds=3600, date="2026-11-21")
    job = valid(batch_job(cb, model(), STABLE, CONFIG, dt.date(2026, 11, 21), RUN_TIME))
    spec = job["spec"]
    assert job["metadata"]["name"] == "daily-20261121"
    assert job["metadata"]["labels"][c.LABEL_CLASSIFICATION_BATCH] == "daily"
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert (spec["backoffLimitPerIndex"], spec["activeDeadlineSeconds"]) == (3, 3600)
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "worker", "operator": "In", "values": [2, 3]},
    }
    assert rules[1]["action"] == "Ignore" and rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["restartPolicy"] == "Never"
    worker = pod["containers"][0]
    assert worker["command"] == ["python", "-m", "kubeclassify.inference.batch"]
    assert worker["args"] == ["--date", "2026-11-21", "--run-time", RUN_TIME.isoformat()]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert json.loads(env["KUBECLASSIFY_BATCH"])["spec"]["parallelism"] == 4
    served = json.loads(env["KUBECLASSIFY_MODEL_DEPLOYMENT"])
    assert served["metadata"]["name"] == "digits"
    assert served["spec"]["model"]["uri"] == STABLE.uri, "batches use the stable model, never a canary"


def test_gpu_shards_ask_for_gpus_on_gpu_nodes_and_storage_comes_from_the_model_deployment() -> None:
    cb = batch(resources={"gpu": 1, "memory": "6Gi"}, date="2026-11-21")
    md = model(storage={"secretName": "s3", "endpoint": "http://minio.data:9000"})
    pod = valid(batch_job(cb, md, STABLE, CONFIG, dt.date(2026, 11, 21), RUN_TIME))["spec"]["template"][
        "spec"
    ]
    worker = pod["containers"][0]
    assert worker["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "6Gi"}
    assert pod["nodeSelector"] == CONFIG.gpu_node_selector
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert worker["envFrom"] == [{"secretRef": {"name": "s3"}}]
    assert {"name": "KUBECLASSIFY_S3__ENDPOINT_URL", "value": "http://minio.data:9000"} in worker["env"]


def test_remote_mode_passes_the_predictor_url() -> None:
    cb = batch(mode="remote", output={"uri": "s3://results/all.csv"})
    job = valid(batch_job(cb, model(), STABLE, CONFIG, None, RUN_TIME, "http://digits.ml.svc"))
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBECLASSIFY_PREDICTOR_URL"] == "http://digits.ml.svc"
    assert job["metadata"]["name"] == "daily"


def test_a_gateway_users_batch_tells_its_worker_whose_images_it_may_read() -> None:
    """The worker refuses rows outside the owner's images; the owner comes from the resource's label."""
    cb = batch(mode="remote", output={"uri": "s3://results/all.csv"})
    cb.metadata["labels"] = {c.LABEL_OWNER: "alice"}
    config = CONFIG.model_copy(update={"gateway_images_uri": "s3://kc/images"})
    job = valid(batch_job(cb, model(), STABLE, config, None, RUN_TIME, "http://digits.ml.svc"))
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--owner-prefix", "s3://kc/images/alice/"]
    unowned = valid(
        batch_job(batch(date="2026-11-21"), model(), STABLE, config, dt.date(2026, 11, 21), RUN_TIME)
    )
    assert "--owner-prefix" not in unowned["spec"]["template"]["spec"]["containers"][0]["args"]


def test_a_replacing_run_has_its_own_job_and_says_so_to_the_worker() -> None:
    cb = batch(schedule={"cron": "@daily"})
    job = valid(
        batch_job(cb, model(), STABLE, CONFIG, dt.date(2026, 11, 20), RUN_TIME, suffix="r1", rerun=True)
    )
    assert job["metadata"]["name"] == "daily-20261120-r1"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["--rerun", "r1"]
    retry = valid(batch_job(cb, model(), STABLE, CONFIG, dt.date(2026, 11, 20), RUN_TIME, suffix="t2"))
    assert retry["metadata"]["name"] == "daily-20261120-t2"
    assert "--rerun" not in retry["spec"]["template"]["spec"]["containers"][0]["args"]


def test_an_admitted_run_classifies_at_most_what_was_paid_for() -> None:
    cb = batch(schedule={"cron": "@daily"})
    job = valid(batch_job(cb, model(), STABLE, CONFIG, dt.date(2026, 11, 20), RUN_TIME, max_images=40))
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["--max-images", "40"]


def test_long_names_stay_within_limits_and_distinct() -> None:
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    names = {job_name(n, dt.date(2026, 11, 21)) for n in (long_a, long_b)}
    assert len(names) == 2 and all(len(n) <= 52 and n.endswith("-20261121") for n in names)


def test_the_daily_cronjob_only_ticks_its_own_batch() -> None:
    cb = batch(schedule={"cron": "30 1 * * *", "timeZone": "Europe/Paris", "suspend": True})
    cron = valid(tick_cronjob(cb, CONFIG))["spec"]
    assert (cron["schedule"], cron["timeZone"], cron["concurrencyPolicy"], cron["suspend"]) == (
        "30 1 * * *",
        "Europe/Paris",
        "Forbid",
        True,
    )
    assert cron["startingDeadlineSeconds"] == CONFIG.starting_deadline_seconds
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["kubeclassify", "operator", "tick", "daily"]
    assert pod["containers"][0]["image"] == CONFIG.operator_image
    account, role, binding = (valid(o) for o in tick_access(cb))
    assert pod["serviceAccountName"] == account["metadata"]["name"] == binding["subjects"][0]["name"]
    assert role["rules"] == [
        {
            "apiGroups": [c.GROUP],
            "resources": ["classificationbatches"],
            "resourceNames": ["daily"],
            "verbs": ["get", "patch"],
        }
    ]


# --- dates ---------------------------------------------------------------------------------------


def at(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso)


D = dt.date.fromisoformat


@pytest.mark.parametrize(
    ("schedule", "last", "now", "due"),
    [
        ({}, None, "2026-11-22T01:30:00+00:00", "2026-11-21"),  # first run: yesterday
        ({}, "2026-11-21", "2026-11-22T05:00:00+00:00", None),  # up to date
        ({}, "2026-11-18", "2026-11-22T01:30:00+00:00", "2026-11-21"),  # missed days skipped
        ({"catchUp": True}, "2026-11-18", "2026-11-22T01:30:00+00:00", "2026-11-19"),  # day by day
        ({"catchUp": True, "startDate": "2026-11-01"}, None, "2026-11-22T01:30:00+00:00", "2026-11-01"),
        ({"startDate": "2026-11-01"}, None, "2026-11-22T01:30:00+00:00", "2026-11-21"),
        ({"startDate": "2026-12-01"}, None, "2026-11-22T01:30:00+00:00", None),  # not started yet
        # 23:30 UTC on the 21st is already the 22nd in Auckland: its yesterday is the 21st.
        ({"timeZone": "Pacific/Auckland"}, "2026-11-20", "2026-11-21T23:30:00+00:00", "2026-11-21"),
        ({"timeZone": "America/Los_Angeles"}, "2026-11-20", "2026-11-22T03:00:00+00:00", None),
    ],
)
def test_the_date_a_tick_processes(
    schedule: dict[str, Any], last: str | None, now: str, due: str | None
) -> None:
    spec = ScheduleSpec.model_validate({"cron": "30 1 * * *", **schedule})
    assert next_date(spec, D(last) if last else None, at(now)) == (D(due) if due else None)


def test_the_upcoming_date_for_status() -> None:
    spec = ScheduleSpec.model_validate({"cron": "30 1 * * *"})
    assert upcoming_date(spec, D("2026-11-21"), at("2026-11-22T05:00:00+00:00")) == D("2026-11-22")
    later = ScheduleSpec.model_validate({"cron": "30 1 * * *", "startDate": "2026-12-01"})
    assert upcoming_date(later, None, at("2026-11-22T05:00:00+00:00")) == D("2026-12-01")


# --- outcomes ------------------------------------------------------------------------------------


def pod(
    index: int, phase: str, message: dict[str, Any] | str | None, created: str = "2026-11-22T01:31:00Z"
) -> dict[str, Any]:
    terminated = {"exitCode": 0 if phase == "Succeeded" else 1}
    if message is not None:
        terminated["message"] = message if isinstance(message, str) else json.dumps(message)
    return {
        "metadata": {
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
            "creationTimestamp": created,
        },
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "worker", "state": {"terminated": terminated}}],
        },
    }


def summary(total: int, classified: int, failed: int, **extra: Any) -> dict[str, Any]:
    counts = {"total": total, "classified": classified, "failed": failed, "skipped": 0}
    return {"counts": counts, "output": "s3://results/2026-11-21/predictions.csv", **extra}


def test_a_run_in_progress_and_a_run_that_succeeded() -> None:
    running = job_outcome({"status": {"active": 2, "startTime": "2026-11-22T01:30:00Z"}}, [])
    assert running.phase == "Running" and not running.finished
    job = {
        "status": {
            "startTime": "2026-11-22T01:30:00Z",
            "completionTime": "2026-11-22T01:40:00Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    }
    pods = [
        pod(0, "Failed", {"error": "the predictor is unreachable"}, "2026-11-22T01:30:10Z"),  # retried
        pod(0, "Succeeded", summary(300, 298, 2), "2026-11-22T01:31:00Z"),
        pod(1, "Succeeded", summary(200, 200, 0)),
    ]
    done = job_outcome(job, pods)
    assert (done.phase, done.counts.total, done.counts.classified, done.counts.failed) == (
        "Succeeded",
        500,
        498,
        2,
    )
    assert done.output_uri == "s3://results/2026-11-21/predictions.csv"
    assert done.completion_time == dt.datetime(2026, 11, 22, 1, 40, tzinfo=dt.UTC)


def named(raw: dict[str, Any], name: str, phase: str | None = None) -> dict[str, Any]:
    raw["metadata"]["name"] = name
    if phase is not None:
        raw["status"] = {"phase": phase}
    return raw


def test_progress_while_a_run_goes_from_summaries_and_log_lines() -> None:
    job = {"spec": {"completions": 3}, "status": {"active": 2}}
    at = dt.datetime(2026, 11, 22, 1, 35, tzinfo=dt.UTC)
    pods = [
        named(pod(0, "Succeeded", summary(100, 98, 2)), "s0"),
        named(pod(1, "Failed", None, "2026-11-22T01:30:00Z"), "s1-old"),  # retried: its log is stale
        named(pod(1, "Running", None, "2026-11-22T01:32:00Z"), "s1", "Running"),
        named(pod(2, "Running", None), "s2", "Running"),
    ]
    logs = {
        "s1-old": ShardProgress(1, 90, 0, 120, 9.0).line(at),
        "s1": "\n".join(
            [
                ShardProgress(1, 10, 1, None, 3.0).line(at),
                ShardProgress(1, 20, 1, 120, 4.0).line(at),
                '{"message": "progress", "logger": "someone.else", "done": 999}',
                '{"message": "progress", "logger": "kubeclassify.progress", "done": -1}',
                "not json, progress",
            ]
        ),
        "s2": "",  # started, nothing said yet
    }
    unknown = run_progress(job, pods, logs)
    assert (unknown.done, unknown.failed, unknown.total, unknown.text) == (120, 3, None, "120/?")
    assert unknown.images_per_second == 4.0 and unknown.remaining_seconds is None
    logs["s2"] = ShardProgress(2, 30, 0, 80, 6.0).line(at) + "\n"
    known = run_progress(job, pods, logs)
    assert (known.done, known.failed, known.total, known.text) == (150, 3, 300, "150/300")
    assert (known.images_per_second, known.remaining_seconds) == (10.0, 15.0)
    assert [duration_text(x) for x in (0.4, 45, 250, 7500)] == ["0s", "45s", "4m10s", "2h05m"]


def test_a_progress_line_reads_back_and_junk_is_skipped() -> None:
    line = ShardProgress(0, 5, 1, 9, 2.5).line(dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    assert last_progress(line) == ShardProgress(0, 5, 1, 9, 2.5)
    assert json.loads(line)["level"] == "INFO"  # reads as one of the JSON log lines
    for junk in ("", "progress", line.replace('"done": 5', '"done": "five"'), line.replace("2.5", "NaN")):
        assert last_progress(junk) is None, junk


def test_a_failed_run_says_why() -> None:
    failed = {
        "status": {
            "conditions": [
                {"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "exit 3"}
            ]
        }
    }
    too_many = job_outcome(failed, [pod(0, "Failed", summary(10, 2, 8, failed_fraction_exceeded=True))])
    assert (too_many.phase, too_many.reason, too_many.counts.failed) == (
        "Failed",
        "TooManyUnreadableImages",
        8,
    )
    bad_input = job_outcome(failed, [pod(0, "Failed", {"error": "manifest has no column 'filepath'"})])
    assert (bad_input.reason, bad_input.message) == ("PodFailurePolicy", "manifest has no column 'filepath'")
    crashed = job_outcome(failed, [pod(0, "Failed", "Traceback ...\nMemoryError\n")])
    assert "MemoryError" in crashed.message


def test_pods_without_resources_get_the_operators_defaults() -> None:
    """Every batch and predictor pod has requests and a memory limit, the resource's or the defaults
    the chart gives the operator (operator.podDefaults)."""
    from kubeclassify.operator.builders.inference_service import Rollout, inference_service

    config = CONFIG.model_copy(update={"default_cpu": "500m", "default_memory": "1Gi"})
    worker = batch_job(batch(date="2026-11-21"), model(), STABLE, config, dt.date(2026, 11, 21), RUN_TIME)
    predictor = inference_service(model(), config, Rollout(stable=STABLE))["spec"]["predictor"]
    for container in (worker["spec"]["template"]["spec"]["containers"][0], predictor["containers"][0]):
        assert container["resources"] == {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"memory": "1Gi"},
        }
    own = batch_job(
        batch(date="2026-11-21", resources={"cpu": "3"}),
        model(),
        STABLE,
        config,
        dt.date(2026, 11, 21),
        RUN_TIME,
    )
    assert own["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "3",
        "memory": "1Gi",
    }


@pytest.mark.parametrize(
    "outcome",
    [
        RunOutcome(
            phase="Failed", reason="TooManyUnreadableImages", message="more images failed than allowed"
        ),
        RunOutcome(phase="Failed", reason="DeadlineExceeded", message="Job was active longer than allowed"),
        RunOutcome(phase="Failed", reason="JobDeleted", message="its Job was deleted before it finished"),
        RunOutcome(phase="Succeeded"),
    ],
    ids=lambda o: o.reason or o.phase,
)
def test_the_gateway_reads_every_run_end_the_operator_writes(
    outcome: RunOutcome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One vocabulary: the status the operator's own code records for a run's end, read by the
    gateway's reader (the phase it ends on and the reason it shows)."""
    from kubeclassify.core.resources.classification_batch import failure_message
    from kubeclassify.operator.handlers import classification_batch as handler

    monkeypatch.setattr(handler, "post", lambda *_: None)  # Events need a running operator
    cb = batch("once", date="2026-11-21")
    body = {"metadata": {"name": "once", "namespace": "ml", "generation": 1}, "spec": cb.spec.to_k8s()}
    status = handler.current_status(body)
    job = {"metadata": {"name": "once-20261121", "annotations": {}}}
    handler._record_run(body, cb, status, outcome, job, None, CONFIG, RUN_TIME)
    written = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert written["phase"] == outcome.phase and written["phase"] in ENDED_PHASES
    assert failure_message(written) == (f"the batch: {outcome.message}" if outcome.phase == "Failed" else "")


@pytest.mark.parametrize("reason", ["InvalidSpec", "PolicyDenied"])
def test_the_gateway_reads_why_the_operator_refused_a_batch(reason: str) -> None:
    """A batch the operator refuses to run at all ends Failed with Ready=False: the gateway shows why
    (it showed nothing: it only read the Succeeded condition)."""
    from kubeclassify.core.resources.classification_batch import failure_message
    from kubeclassify.operator.handlers import classification_batch as handler
    from kubeclassify.operator.handlers.status import Problem

    body = {"metadata": {"name": "once", "namespace": "ml", "generation": 1}, "spec": {}}
    refused = handler.failed(body, Problem(reason, f"{reason}: what to fix", permanent=True))
    written = refused.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert written["phase"] in ENDED_PHASES and failure_message(written) == f"{reason}: what to fix"
