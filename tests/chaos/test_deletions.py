"""Children of running batches deleted by hand, as a user or a clean-up script would delete them: a
running Job (of a one-off batch, and of a daily batch catching up), a finished Job, a pod mid-run,
and a daily batch's CronJob. Each batch recovers, or fails with a condition that says why and runs
again when asked; nothing runs twice and every run's results hold a row per image.

Which batches lose what, and when a pod is cut, follow the seed (`make test-chaos SEED=...`)."""

from __future__ import annotations

import csv
import io
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chaos.conftest import DAYS, PER_DAY, World
from harness.kubelet import CB, Kubelet
from harness.wait import wait_for

from kubeclassify.core import constants as c
from kubeclassify.core.resources.classification_batch import CONDITION_SUCCEEDED

EACH = 2  # one-off batches losing a running Job, a finished Job, a pod
DAILIES = 2


@pytest.mark.timeout(600)
def test_children_deleted_by_hand_leave_no_batch_stuck_and_nothing_twice(
    seed: int,
    world: World,
    tmp_path: Path,
    report: Callable[[str], None],
) -> None:
    rng = random.Random(seed)
    cluster, store, namespace = world.cluster, world.store, world.namespace
    names = [f"once-{i}" for i in range(3 * EACH)]
    rng.shuffle(names)
    running, finished, cut = names[:EACH], names[EACH : 2 * EACH], names[2 * EACH :]
    day = {n: DAYS[i % len(DAYS)] for i, n in enumerate(sorted(names))}
    dailies = [f"daily-{i}" for i in range(DAILIES)]
    held_daily = f"{dailies[0]}-{DAYS[0]:%Y%m%d}"  # a daily batch's first date, its Job deleted

    def job_of(name: str) -> str:
        return f"{name}-{day[name]:%Y%m%d}"

    status, annotate = cluster.status, cluster.annotate

    def pods_of(job: str) -> list[Any]:
        return list(
            cluster.core.list_namespaced_pod(
                namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
            ).items
        )

    def cronjob(name: str) -> Any:
        crons = cluster.batch.list_namespaced_cron_job(namespace).items
        return next((j for j in crons if j.metadata.labels.get(c.LABEL_CLASSIFICATION_BATCH) == name), None)

    def reason(name: str, kind: str) -> str | None:
        conditions = status(name).get("conditions") or []
        return next((x.get("reason") for x in conditions if x["type"] == kind), None)

    operator = world.start_operator(tmp_path / "operator")
    kubelet = Kubelet(cluster, tmp_path / "pods", workers=3)
    kubelet.hold = {job_of(n) for n in running} | {held_daily}
    kubelet.interrupt = {job_of(n): rng.uniform(0.3, 3.0) for n in cut}
    deleted: Counter[str] = Counter()
    try:
        world.stage()
        for name in sorted(names):
            cluster.create(CB, world.batch(name, date=str(day[name])))
        schedule = {"cron": "30 1 * * *", "startDate": str(DAYS[0]), "catchUp": True}
        for name in dailies:
            cluster.create(CB, world.batch(name, schedule=schedule))
        for name in dailies:  # the CronJob's first tick, as its pod would stamp it
            wait_for(lambda n=name: status(n).get("phase") == "Scheduled", what=name)
            uid = cronjob(name).metadata.uid
            cluster.batch.delete_namespaced_cron_job(cronjob(name).metadata.name, namespace)
            deleted["CronJob"] += 1
            wait_for(
                lambda n=name, u=uid: (j := cronjob(n)) is not None and j.metadata.uid != u,
                what=f"{name}'s CronJob again",
            )
            annotate(name, c.ANNOTATION_TICK, str(time.time()))

        for job in sorted(kubelet.hold):  # a running Job
            wait_for(lambda j=job: pods_of(j), timeout=120, what=f"{job}'s pod running (seed {seed})")
            cluster.batch.delete_namespaced_job(job, namespace, propagation_policy="Background")
            deleted["running Job"] += 1
        for name in running:
            wait_for(lambda n=name: status(n).get("phase") == "Failed", what=f"{name} Failed (seed {seed})")
            assert reason(name, CONDITION_SUCCEEDED) == "JobDeleted", seed
            annotate(name, c.ANNOTATION_RERUN_DATE, str(day[name]))
        for name in finished:  # a finished Job, its run recorded: deleting it changes nothing
            wait_for(lambda n=name: status(n).get("phase") == "Succeeded", timeout=180, what=name)
            cluster.batch.delete_namespaced_job(job_of(name), namespace, propagation_policy="Background")
            deleted["finished Job"] += 1

        def settled() -> bool:
            once = all(status(n).get("phase") == "Succeeded" for n in names)
            return once and all(status(n).get("lastProcessedDate") == str(DAYS[-1]) for n in dailies)

        try:
            wait_for(settled, timeout=300, what=f"every batch to end (seed {seed})")
        except AssertionError as e:
            keys = ("phase", "jobName", "lastProcessedDate", "pendingRun", "conditions")
            where = {n: {k: status(n).get(k) for k in keys} for n in [*names, *dailies]}
            raise AssertionError(f"{e}: {json.dumps(where, indent=1)}; Jobs run {kubelet.ran}") from None
        deleted["pod"], deleted["pod cut before its process ended"] = len(cut), len(kubelet.interrupted)
        assert kubelet.errors == [], seed
        runs = {n: status(n)["recentRuns"] for n in [*names, *dailies]}
        jobs_run = {r["jobName"] for rs in runs.values() for r in rs} | {held_daily}
        ids = {f"{namespace}.{job}" for job in jobs_run}
        wait_for(lambda: world.receiver.delivery_ids() >= ids, timeout=60, what=f"the webhooks (seed {seed})")
        time.sleep(2)  # long enough for a Job made twice, or a finished Job made again, to show

        assert {n: [r["phase"] for r in runs[n]] for n in running} == {
            n: ["Failed", "Succeeded"] for n in running
        }
        assert all(len(runs[n]) == 1 for n in [*finished, *cut]), (
            f"a deleted finished Job changes nothing (seed {seed})"
        )
        assert [r["date"] for r in runs[dailies[0]] if r["phase"] == "Succeeded"] == [str(d) for d in DAYS]
        # its deleted run ended Failed and its date ran again (recentRuns keeps the last seven runs)
        assert runs[dailies[0]][0]["jobName"] == f"{held_daily}-t2", seed
        assert [r["date"] for r in runs[dailies[1]]] == [str(d) for d in DAYS], "each date once, in order"
        jobs = Counter(j["metadata"]["name"] for j in cluster.jobs())
        assert set(jobs.values()) == {1}
        expected = (
            {r["jobName"] for rs in runs.values() for r in rs} - kubelet.hold - {job_of(n) for n in finished}
        )
        assert set(jobs) == expected, f"no Job beside its runs' (seed {seed})"
        for r in (r for rs in runs.values() for r in rs if r["phase"] == "Succeeded"):
            rows = list(csv.DictReader(io.StringIO(store.read(r["outputUri"]).decode())))
            assert len(rows) == PER_DAY == r["counts"]["total"], (
                f"{r['jobName']}: a row per image (seed {seed})"
            )
        assert world.receiver.delivery_ids() == ids, f"a webhook for each run, failed ones too (seed {seed})"
        hooks = len(world.receiver.received)
        report(f"deleted {dict(deleted)}, {len(kubelet.ran)} Jobs run, {hooks} webhooks")
    finally:
        kubelet.stop()
        operator.process.stop()
