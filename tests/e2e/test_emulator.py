"""The Kubernetes API emulator behaves as the parts of the API server our code relies on."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "kubeclassify.io", "v1alpha1", "classificationbatches"
ROOT = Path(__file__).resolve().parents[2]


def batch(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClassificationBatch",
        "metadata": {"name": name, "labels": {"team": "vision"}},
        "spec": {
            "modelRef": {"name": "digits"},
            "input": {"manifest": {"uri": "s3://data/manifest.csv"}},
            "date": "2026-01-05",
            "output": {"uri": "s3://results/{date}/predictions.csv"},
            **spec,
        },
    }


def create(custom: client.CustomObjectsApi, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    return custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)  # type: ignore[no-any-return]


def test_create_assigns_server_metadata(custom: client.CustomObjectsApi, namespace: str) -> None:
    obj = create(custom, namespace, batch("one"))
    meta = obj["metadata"]
    assert meta["namespace"] == namespace
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    got = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "one")
    assert got["metadata"]["resourceVersion"] == meta["resourceVersion"]
    with pytest.raises(ApiException) as e:
        create(custom, namespace, batch("one"))
    assert e.value.status == 409


def test_every_write_bumps_resource_version_and_spec_changes_bump_generation(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    rv0 = int(create(custom, namespace, batch("gen"))["metadata"]["resourceVersion"])
    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "gen", {"status": {"phase": "Running"}}
    )
    assert int(status["metadata"]["resourceVersion"]) > rv0
    assert status["metadata"]["generation"] == 1
    assert status["status"]["phase"] == "Running"
    changed = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "gen", {"spec": {"parallelism": 4}}
    )
    assert changed["metadata"]["generation"] == 2
    assert int(changed["metadata"]["resourceVersion"]) > int(status["metadata"]["resourceVersion"])


def test_status_subresource_separates_spec_and_status(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    create(custom, namespace, batch("sub"))
    main = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "sub", {"spec": {"parallelism": 2}, "status": {"phase": "Failed"}}
    )
    assert "status" not in main, "a write to the object must not change status"
    st = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "sub", {"spec": {"parallelism": 9}, "status": {"phase": "Running"}}
    )
    assert st["spec"]["parallelism"] == 2, "a write to /status must not change spec"
    assert st["status"]["phase"] == "Running"


def json_patch(url: str, ops: list[dict[str, Any]]) -> int:
    req = urllib.request.Request(
        url,
        data=json.dumps(ops).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json-patch+json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_json_patch_test_failure_is_422_and_changes_nothing(
    custom: client.CustomObjectsApi,
    kube_api,
    namespace: str,  # type: ignore[no-untyped-def]
) -> None:
    obj = create(custom, namespace, batch("jp", parallelism=1))
    url = f"{kube_api.url}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/jp"
    ops = [
        {"op": "test", "path": "/spec/parallelism", "value": 5},
        {"op": "replace", "path": "/spec/parallelism", "value": 6},
    ]
    assert json_patch(url, ops) == 422
    assert (
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "jp")["spec"]["parallelism"]
        == 1
    )
    ops[0]["value"] = 1
    assert json_patch(url, ops) == 200
    got = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "jp")
    assert got["spec"]["parallelism"] == 6
    assert got["metadata"]["uid"] == obj["metadata"]["uid"]
    assert got["metadata"]["generation"] == 2


def test_stale_resource_version_conflicts(custom: client.CustomObjectsApi, namespace: str) -> None:
    obj = create(custom, namespace, batch("rv"))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "rv", {"spec": {"parallelism": 2}}
    )
    stale = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "spec": {"parallelism": 3}}
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "rv", stale)
    assert e.value.status == 409
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "rv")
    obj["spec"]["parallelism"] = 7
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "rv", obj)
    assert replaced["spec"]["parallelism"] == 7


def test_list_reports_kind_and_current_resource_version(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    a = create(custom, namespace, batch("a"))
    b = create(custom, namespace, {**batch("b"), "metadata": {"name": "b", "labels": {"team": "ops"}}})
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert listed["kind"] == "ClassificationBatchList"
    assert listed["apiVersion"] == f"{GROUP}/{VERSION}"
    assert int(listed["metadata"]["resourceVersion"]) >= int(b["metadata"]["resourceVersion"])
    assert {i["metadata"]["name"] for i in listed["items"]} == {"a", "b"}
    vision = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector="team=vision"
    )
    assert [i["metadata"]["name"] for i in vision["items"]] == [a["metadata"]["name"]]
    not_vision = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, label_selector="team notin (vision),team"
    )
    assert [i["metadata"]["name"] for i in not_vision["items"]] == ["b"]


def test_watch_replays_only_newer_objects(custom: client.CustomObjectsApi, namespace: str) -> None:
    create(custom, namespace, batch("old"))
    rv = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["metadata"][
        "resourceVersion"
    ]
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        w = watch.Watch()
        for event in w.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            resource_version=rv,
            timeout_seconds=3,
        ):
            seen.append((event["type"], event["object"]["metadata"]["name"]))

    t = threading.Thread(target=consume)
    t.start()
    create(custom, namespace, batch("new"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "new")
    t.join(timeout=10)
    assert seen == [("ADDED", "new"), ("DELETED", "new")]


def test_finalizers_hold_deletion_and_owners_cascade(
    custom: client.CustomObjectsApi, batch_api: client.BatchV1Api, namespace: str
) -> None:
    owner = create(
        custom, namespace, {**batch("owner"), "metadata": {"name": "owner", "finalizers": ["x/y"]}}
    )
    job = client.V1Job(
        metadata=client.V1ObjectMeta(
            name="owner-job",
            owner_references=[
                client.V1OwnerReference(
                    api_version=f"{GROUP}/{VERSION}",
                    kind="ClassificationBatch",
                    name="owner",
                    uid=owner["metadata"]["uid"],
                    controller=True,
                    block_owner_deletion=True,
                )
            ],
        ),
        spec=client.V1JobSpec(
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never", containers=[client.V1Container(name="c", image="busybox:1.37")]
                )
            )
        ),
    )
    batch_api.create_namespaced_job(namespace, job)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owner")
    held = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owner")
    assert held["metadata"]["deletionTimestamp"]
    assert batch_api.read_namespaced_job("owner-job", namespace).metadata.name == "owner-job"
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "owner", {"metadata": {"finalizers": None}}
    )
    with pytest.raises(ApiException) as e:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owner")
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        batch_api.read_namespaced_job("owner-job", namespace)
    assert e.value.status == 404


def test_kubectl_applies_and_reads_back(kube_api, namespace: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kubectl = str(ROOT / ".venv" / "bin" / "kubectl")
    manifest = tmp_path / "cb.yaml"
    manifest.write_text(json.dumps(batch("from-kubectl")))
    base = [kubectl, "--kubeconfig", str(kube_api.kubeconfig), "-n", namespace]
    done = subprocess.run(
        [*base, "create", "--validate=false", "-f", str(manifest)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    got = subprocess.run([*base, "get", "cb", "-o", "json"], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert [i["metadata"]["name"] for i in json.loads(got.stdout)["items"]] == ["from-kubectl"]


def test_jobs_round_trip(batch_api: client.BatchV1Api, namespace: str) -> None:
    labels = {"kubeclassify.io/classificationbatch": "daily"}
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="daily-2026-11-20", labels=labels),
        spec=client.V1JobSpec(
            completions=2,
            parallelism=2,
            completion_mode="Indexed",
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="worker", image="busybox:1.37")],
                )
            ),
        ),
    )
    created = batch_api.create_namespaced_job(namespace, job)
    assert created.metadata.uid and created.spec.completion_mode == "Indexed"
    batch_api.create_namespaced_job(
        namespace, client.V1Job(metadata=client.V1ObjectMeta(name="unrelated"), spec=job.spec)
    )
    listed = batch_api.list_namespaced_job(
        namespace, label_selector="kubeclassify.io/classificationbatch=daily"
    )
    assert [j.metadata.name for j in listed.items] == ["daily-2026-11-20"]
    seen: list[tuple[str, int | None]] = []

    def consume() -> None:
        for event in watch.Watch().stream(
            batch_api.list_namespaced_job,
            namespace,
            label_selector="kubeclassify.io/classificationbatch=daily",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=3,
        ):
            seen.append((event["type"], event["object"].status.succeeded if event["object"].status else None))

    t = threading.Thread(target=consume)
    t.start()
    batch_api.patch_namespaced_job_status("daily-2026-11-20", namespace, {"status": {"succeeded": 2}})
    t.join(timeout=10)
    assert seen == [("MODIFIED", 2)]
    assert batch_api.read_namespaced_job("daily-2026-11-20", namespace).status.succeeded == 2


def test_kubectl_apply_creates_then_updates(kube_api, namespace: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kubectl = str(ROOT / ".venv" / "bin" / "kubectl")
    base = [kubectl, "--kubeconfig", str(kube_api.kubeconfig), "-n", namespace]
    manifest = tmp_path / "cb.yaml"
    for parallelism in (1, 3):
        manifest.write_text(json.dumps(batch("applied", parallelism=parallelism)))
        done = subprocess.run(
            [*base, "apply", "--validate=false", "-f", str(manifest)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    got = subprocess.run(
        [*base, "get", "cb", "applied", "-o", "json"], capture_output=True, text=True, timeout=60
    )
    assert json.loads(got.stdout)["spec"]["parallelism"] == 3


def test_a_watch_from_an_older_version_replays_what_happened_since(
    batch_api: client.BatchV1Api, namespace: str
) -> None:
    spec = client.V1JobSpec(
        template=client.V1PodTemplateSpec(
            spec=client.V1PodSpec(
                restart_policy="Never", containers=[client.V1Container(name="c", image="busybox:1.37")]
            )
        )
    )
    batch_api.create_namespaced_job(
        namespace, client.V1Job(metadata=client.V1ObjectMeta(name="late"), spec=spec)
    )
    rv = batch_api.list_namespaced_job(namespace).metadata.resource_version
    batch_api.patch_namespaced_job_status("late", namespace, {"status": {"active": 1}})
    batch_api.delete_namespaced_job("late", namespace)
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            batch_api.list_namespaced_job, namespace, resource_version=rv, timeout_seconds=2
        )
    ]
    assert events == [("MODIFIED", "late"), ("DELETED", "late")]


def test_a_timers_write_from_a_stale_copy_is_refused(
    custom: client.CustomObjectsApi, api_client: client.ApiClient, namespace: str
) -> None:
    """The operator's progress and webhook timers run beside its Job handler: a status they computed
    from a copy that the run's end has since changed is refused (409), not written over the end. (No
    operator runs in this module: the test's writes are the only ones.)"""
    from kubeclassify.operator.handlers import classification_batch
    from kubeclassify.operator.kube import ClusterApi

    kube = ClusterApi(api_client)
    stale = create(custom, namespace, batch("stale"))
    kube.patch_classification_batch_status(namespace, "stale", {"phase": "Succeeded", "progress": "31/31"})
    running = classification_batch.current_status(stale)
    running.phase, running.progress = "Running", "3/31"
    with pytest.raises(ApiException) as refused:
        classification_batch.write(kube, stale, running)
    assert refused.value.status == 409

    def status() -> dict[str, Any]:
        return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "stale")["status"]  # type: ignore[no-any-return]

    assert (status()["phase"], status()["progress"]) == ("Succeeded", "31/31")
    fresh = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "stale")
    classification_batch.write(kube, fresh, running)  # from the latest copy: written
    assert (status()["phase"], status()["progress"]) == ("Running", "3/31")
