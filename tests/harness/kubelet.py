"""A stand-in for the kubelet and the Job controller, for tests against the API emulator: each
completion index of a Job the operator made runs as a local process (its container's command,
arguments, environment and Secrets), its output becomes the pod's log and its summary the pod's
termination message, and the Job's outcome is reported as the Job controller would. `Kubelet`
does this in the background for every new Job, as a cluster would."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.kubeapi_launch import append_pod_log
from harness.wait import wait_for
from kubeclassify.core import constants as c

GROUP, VERSION = c.GROUP, c.VERSION
CB = c.PLURALS[c.CLASSIFICATION_BATCH]


class Cluster:
    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.custom, self.core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
        self.batch, self.rbac = client.BatchV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
        self.api, self.ns = api_client, namespace
        self.url = api_client.configuration.host

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, body)

    def cb(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, CB, name)

    def status(self, name: str) -> dict[str, Any]:
        """The ClassificationBatch's status ({} before the operator wrote one)."""
        return dict(self.cb(name).get("status") or {})

    def annotate(self, name: str, key: str, value: str) -> None:
        """Set one annotation of the ClassificationBatch (a tick, a rerun date), as kubectl would."""
        patch = {"metadata": {"annotations": {key: value}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, CB, name, patch)

    def jobs(self) -> list[dict[str, Any]]:
        items = self.api.sanitize_for_serialization(self.batch.list_namespaced_job(self.ns))["items"]
        return [j for j in items if j["metadata"]["labels"].get(c.LABEL_COMPONENT) == "batch"]

    def secret(self, name: str, data: dict[str, bytes], labels: dict[str, str] | None = None) -> None:
        encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
        metadata = {"name": name, "labels": labels or {}}
        self.core.create_namespaced_secret(self.ns, {"metadata": metadata, "data": encoded})

    def events(self, name: str) -> list[tuple[str, str]]:
        return [
            (e.type, e.reason)
            for e in self.core.list_namespaced_event(self.ns).items
            if e.involved_object.name == name and e.involved_object.kind == "ClassificationBatch"
        ]


def run_job_locally(cluster: Cluster, job: dict[str, Any], workdir: Path) -> None:
    """Do what the kubelet and the Job controller would: run each index's container as a process,
    then report the pods' termination messages and the Job's outcome to the API."""
    failed = False
    for index in range(job["spec"]["completions"]):
        pod = start_pod(cluster, job, index)
        failed = run_index(cluster, job, index, pod, workdir) != 0 or failed
    finish_job(cluster, job, failed)


def start_pod(cluster: Cluster, job: dict[str, Any], index: int) -> str:
    """The pod of one completion index, Running, as the Job controller and the kubelet make it."""
    spec = job["spec"]
    name = f"{job['metadata']['name']}-{index}-x{os.urandom(2).hex()}"
    labels = {
        **spec["template"]["metadata"]["labels"],
        "batch.kubernetes.io/job-name": job["metadata"]["name"],
    }
    annotations = {"batch.kubernetes.io/job-completion-index": str(index)}
    pod = {
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": spec["template"]["spec"],
    }
    cluster.core.create_namespaced_pod(cluster.ns, pod)
    cluster.core.patch_namespaced_pod_status(name, cluster.ns, {"status": {"phase": "Running"}})
    active = {"status": {"active": 1}}  # as the Job controller counts its pods that have not ended
    cluster.batch.patch_namespaced_job_status(job["metadata"]["name"], cluster.ns, active)
    return name


def run_index(cluster: Cluster, job: dict[str, Any], index: int, pod: str, workdir: Path) -> int:
    """Run one index's container as a process into `pod`: its output becomes the pod's log, its
    summary the termination message; returns its exit code."""
    argv, env, message = _container(cluster, job, index, workdir)
    done = subprocess.run(argv, env=env, capture_output=True, timeout=240)
    assert message.exists(), done.stderr.decode()[-2000:]
    append_pod_log(cluster.url, cluster.ns, pod, done.stdout.decode() + done.stderr.decode())
    container = job["spec"]["template"]["spec"]["containers"][0]
    terminated = {
        "exitCode": done.returncode,
        "message": message.read_text(),
        "reason": "Completed" if done.returncode == 0 else "Error",
    }
    status = {
        "phase": "Succeeded" if done.returncode == 0 else "Failed",
        "containerStatuses": [
            {
                "name": container["name"],
                "ready": False,
                "restartCount": 0,
                "image": container["image"],
                "imageID": "",
                "state": {"terminated": terminated},
            }
        ],
    }
    cluster.core.patch_namespaced_pod_status(pod, cluster.ns, {"status": status})
    return done.returncode


def kill_index(
    cluster: Cluster, job: dict[str, Any], index: int, pod: str, workdir: Path, after: float
) -> bool:
    """`kubectl delete pod` while one index runs: its process is killed (SIGKILL) `after` seconds
    in and the pod is gone, leaving no termination message. False if it had ended by then."""
    argv, env, _ = _container(cluster, job, index, workdir)
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=after)
        ended = True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        ended = False
    cluster.core.delete_namespaced_pod(pod, cluster.ns)
    return not ended


def _container(
    cluster: Cluster, job: dict[str, Any], index: int, workdir: Path
) -> tuple[list[str], dict[str, str], Path]:
    """The argv and environment of one index's container, and where its termination message goes."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECLASSIFY_", "AWS_"))}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    for source in container.get("envFrom", []):
        secret = cluster.core.read_namespaced_secret(source["secretRef"]["name"], cluster.ns)
        env.update({k: base64.b64decode(v).decode() for k, v in secret.data.items()})
    command = [
        sys.executable if container["command"][0] == "python" else container["command"][0],
        *container["command"][1:],
    ]
    message = workdir / f"{job['metadata']['name']}-{index}.termination"
    message.unlink(missing_ok=True)
    argv = [*command, *container["args"], "--termination-log", str(message)]
    return argv, {**env, "JOB_COMPLETION_INDEX": str(index)}, message


def finish_job(cluster: Cluster, job: dict[str, Any], failed: bool) -> None:
    """The Job's outcome, as the Job controller reports it."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": "Failed" if failed else "Complete", "status": "True", "lastTransitionTime": now}
    status = {
        "startTime": now,
        "completionTime": None if failed else now,
        "conditions": [condition],
        "succeeded": 0 if failed else job["spec"]["completions"],
    }
    cluster.batch.patch_namespaced_job_status(job["metadata"]["name"], cluster.ns, {"status": status})


def end_job(cluster: Cluster, name: str) -> None:
    """Mark a Job complete, as the Job controller would (no pods: the run had no images)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    complete = {"type": "Complete", "status": "True", "lastTransitionTime": now}
    status = {"startTime": now, "completionTime": now, "conditions": [complete], "succeeded": 1}
    cluster.batch.patch_namespaced_job_status(name, cluster.ns, {"status": status})


def fail_job(cluster: Cluster, name: str) -> None:
    """End a Job as failed, as the Job controller would (its pods' messages aside)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": now}
    cluster.batch.patch_namespaced_job_status(name, cluster.ns, {"status": {"conditions": [failed]}})


class Kubelet:
    """Runs every batch Job of the namespace that has not ended, in the background, one Job at a
    time per worker thread, as `run_job_locally` does. A Job deleted while it runs is left as it
    is (its pods' writes fail); a Job whose pods exist already (run before a restart of the test's
    view) is not run twice. `ran` counts the Jobs run.

    For chaos: a Job named in `hold` gets its first pod, Running, and goes no further until the
    Job is deleted (its pod then goes too, as the garbage collector takes it); a Job named in
    `interrupt` has its first index's pod deleted that many seconds into its run, and the Job
    controller's replacement pod runs the index again (`interrupted` lists those cut mid-run)."""

    def __init__(self, cluster: Cluster, workdir: Path, workers: int = 2) -> None:
        self.cluster, self.workdir = cluster, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.ran: list[str] = []
        self.errors: list[str] = []  # what went wrong running a Job (the test says so)
        self.hold: set[str] = set()
        self.interrupt: dict[str, float] = {}
        self.interrupted: list[str] = []
        self._taken: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(workers)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=300)

    def _next(self) -> dict[str, Any] | None:
        with self._lock:
            for job in self.cluster.jobs():
                name = job["metadata"]["name"]
                conditions = (job.get("status") or {}).get("conditions") or []
                if name in self._taken or any(x.get("status") == "True" for x in conditions):
                    continue
                self._taken.add(name)
                return job
        return None

    def _run(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        if name in self.hold:
            pod = start_pod(self.cluster, job, 0)
            wait_for(lambda: self._gone(name), timeout=240, what=f"the held Job {name} deleted")
            self.cluster.core.delete_namespaced_pod(pod, self.cluster.ns)
            return
        if name in self.interrupt:
            pod = start_pod(self.cluster, job, 0)
            if kill_index(self.cluster, job, 0, pod, self.workdir, self.interrupt[name]):
                self.interrupted.append(name)
        run_job_locally(self.cluster, job, self.workdir)

    def _gone(self, job: str) -> bool:
        try:
            self.cluster.batch.read_namespaced_job(job, self.cluster.ns)
        except ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self._next()
            if job is None:
                self._stop.wait(0.2)
                continue
            try:
                self._run(job)
            except ApiException as e:  # deleted meanwhile: its pods and status have nowhere to go
                if e.status != 404:
                    self.errors.append(f"{job['metadata']['name']}: {e.status} {e.reason}")
            except Exception as e:  # noqa: BLE001 - kept for the test to report; the next Job runs
                self.errors.append(f"{job['metadata']['name']}: {e!r}"[:2000])
            self.ran.append(job["metadata"]["name"])


def ready_inference_service(custom: client.CustomObjectsApi, namespace: str, name: str, url: str) -> None:
    """Report the operator's InferenceService `name` ready at `url`, as KServe would, and wait for its
    ModelDeployment to be Ready."""
    isvc = ("serving.kserve.io", "v1beta1", namespace, "inferenceservices", name)

    def made() -> list[dict[str, Any]]:
        items = custom.list_namespaced_custom_object(*isvc[:4])["items"]
        return [i for i in items if i["metadata"]["name"] == name]

    generation = wait_for(made, what="the InferenceService")[0]["metadata"]["generation"]
    serving: dict[str, Any] = {"observedGeneration": generation, "url": url, "address": {"url": url}}
    serving["conditions"] = [{"type": "Ready", "status": "True"}]
    custom.patch_namespaced_custom_object_status(*isvc, {"status": serving})
    plural = c.PLURALS[c.MODEL_DEPLOYMENT]

    def ready() -> bool:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        return bool(body.get("status", {}).get("phase") == "Ready")

    wait_for(ready, what=f"the ModelDeployment {name} Ready")
