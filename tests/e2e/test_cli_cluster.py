"""`kubeclassify batch submit|status|results --kubeconfig`: ClassificationBatches as resources, against
the API emulator (status written as the operator would) and a real SeaweedFS for the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from harness.kubeapi_launch import kubeconfig_for
from kubernetes import client, config

from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import ObjectStore

ROOT = Path(__file__).resolve().parents[2]


def cli(
    kube_api: Any, namespace: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kubeclassify.core.cli", "batch", *args]
    argv += ["--kubeconfig", str(kube_api.kubeconfig), "--namespace", namespace]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}, cwd=ROOT
    )


def set_status(kube_api: Any, namespace: str, name: str, status: dict[str, Any]) -> None:
    api = client.CustomObjectsApi(config.new_client_from_config(str(kube_api.kubeconfig)))
    api.patch_namespaced_custom_object_status(
        "kubeclassify.io", "v1alpha1", namespace, "classificationbatches", name, {"status": status}
    )


def test_submit_status_and_results_of_a_resource(
    kube_api: Any, namespace: str, s3_settings: S3Settings, store: ObjectStore, bucket: str, tmp_path: Path
) -> None:
    submitted = cli(kube_api, namespace, "submit", "--resource", "examples/batch-one-date.yaml", "-o", "json")
    assert submitted.returncode == 0, submitted.stderr
    info = json.loads(submitted.stdout)
    assert (info["name"], info["state"]) == ("digits-2026-11-20", "Pending")

    early = tmp_path / "results.csv"
    pending = cli(kube_api, namespace, "results", info["name"], "--file", str(early))
    assert pending.returncode == 2 and "no results yet" in pending.stderr
    assert list(early.parent.iterdir()) == []  # nothing half-written left behind

    results = f"s3://{bucket}/results/2026-11-20/predictions.csv"
    store.write(results, b"id,source,label\n1,s3://x/a.png,cat\n")
    counts = {"total": 1, "classified": 1, "failed": 0, "skipped": 0}

    def finish() -> None:
        time.sleep(1.5)
        set_status(
            kube_api, namespace, info["name"], {"phase": "Succeeded", "counts": counts, "outputUri": results}
        )

    threading.Thread(target=finish).start()
    waited = cli(kube_api, namespace, "status", info["name"], "--wait", "-o", "json")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["state"] == "Succeeded"

    got = cli(kube_api, namespace, "results", info["name"], env=s3_settings.to_env())
    assert got.returncode == 0, got.stderr
    assert got.stdout == "id,source,label\n1,s3://x/a.png,cat\n"


def test_a_failed_run_exits_1_and_a_bad_resource_is_refused_before_the_api(
    kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    submitted = cli(kube_api, namespace, "submit", "--resource", "examples/batch-prefix.yaml", "-o", "json")
    name = json.loads(submitted.stdout)["name"]
    set_status(kube_api, namespace, name, {"phase": "Failed"})
    assert cli(kube_api, namespace, "status", name, "--wait").returncode == 1

    refused = cli(kube_api, namespace, "submit", "--resource", "tests/fixtures/invalid/cb-two-inputs.yaml")
    assert refused.returncode == 2 and "input" in refused.stderr
    missing = cli(kube_api, namespace, "status", "no-such-batch")
    assert missing.returncode == 2 and "404" in missing.stderr
    both = cli(kube_api, namespace, "submit", "--date", "2026-11-20")
    assert both.returncode == 2 and "--resource goes with --kubeconfig" in both.stderr


def test_kubeconfig_alone_reads_KUBECONFIG_and_a_missing_one_is_a_message(
    kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "kubeclassify.core.cli", "batch", *args, "--namespace", namespace]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)

    base = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"HOME": str(tmp_path)}
    # --kubeconfig with no file named: $KUBECONFIG, as kubectl reads it
    found = run("submit", "--kubeconfig", "--resource", "examples/batch-urls.yaml", "-o", "name",
                env={**base, "KUBECONFIG": str(kube_api.kubeconfig)})  # fmt: skip
    assert found.returncode == 0 and found.stdout.strip() == "alice-3f9c2a", found.stderr
    # no $KUBECONFIG and no ~/.kube/config: one line that says which file, exit 4 (cannot reach)
    missing = run("status", "alice-3f9c2a", "--kubeconfig", env=base)
    assert missing.returncode == 4, missing.stderr
    assert missing.stderr.startswith("kubeclassify: cannot use the kubeconfig ~/.kube/config")
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
    named = run("status", "alice-3f9c2a", "--kubeconfig", str(tmp_path / "absent"), env=base)
    assert named.returncode == 4 and str(tmp_path / "absent") in named.stderr
    # an API server that does not answer: exit 4 as well
    dead = kubeconfig_for("http://127.0.0.1:9", tmp_path / "dead.yaml")
    away = run("status", "alice-3f9c2a", "--kubeconfig", str(dead), env=base)
    assert away.returncode == 4 and "cannot reach the Kubernetes API" in away.stderr, away.stderr


def test_one_dates_results_of_a_daily_batch(
    kube_api: Any, namespace: str, s3_settings: S3Settings, store: ObjectStore, tmp_path: Path
) -> None:
    submitted = cli(kube_api, namespace, "submit", "--resource", "examples/batch-daily.yaml", "-o", "name")
    assert submitted.returncode == 0, submitted.stderr
    name = submitted.stdout.strip()
    template = yaml.safe_load((ROOT / "examples/batch-daily.yaml").read_text())["spec"]["output"]["uri"]
    store.create_bucket(template.split("/")[2])
    for day in ("2026-11-19", "2026-11-20"):
        store.write(template.format(date=day), f"id,source,label\n1,s3://x/{day}.png,cat\n".encode())
    got = cli(kube_api, namespace, "results", name, "--date", "2026-11-19", env=s3_settings.to_env())
    assert got.returncode == 0, got.stderr
    assert got.stdout == "id,source,label\n1,s3://x/2026-11-19.png,cat\n"
    bad = cli(kube_api, namespace, "results", name, "--date", "2026-13-01")
    assert bad.returncode == 2 and "not a date" in bad.stderr
    absent = cli(
        kube_api,
        namespace,
        "results",
        name,
        "--date",
        "2026-11-18",
        "-f",
        str(tmp_path / "x.csv"),
        env=s3_settings.to_env(),
    )
    assert absent.returncode == 2 and "has no results at" in absent.stderr, absent.stderr
    assert not (tmp_path / "x.csv").exists()
    one = cli(kube_api, namespace, "submit", "--resource", "examples/batch-one-date.yaml", "-o", "name")
    single = cli(kube_api, namespace, "results", one.stdout.strip(), "--date", "2026-11-20")
    assert single.returncode == 2 and "not a daily batch" in single.stderr
    label = cli(kube_api, namespace, "results", name, "--label", "cat")
    assert label.returncode == 2 and "--label is the gateway's" in label.stderr
