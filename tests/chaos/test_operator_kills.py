"""The operator killed (SIGKILL) at random moments, many times, while twenty-odd runs go: one-off
batches, daily batches catching up over a missed week, and reruns. A kubelet stand-in runs every Job
the operator makes with the real batch worker (mode remote, against the digits predictor). At the
end: no duplicate Job, no batch stuck, every run's results published once with a row per image, and
every run's webhook delivered with one delivery id per run.

The kills follow a seeded random sequence: KUBECLASSIFY_CHAOS_SEED (`make test-chaos SEED=...`)
replays one; the seed is printed, and named in every failure."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from chaos.conftest import DAYS, PER_DAY, World
from e2e.conftest import Operator
from harness.kubelet import CB, Kubelet
from harness.wait import wait_for

from kubeclassify.core import constants as c

ONE_OFFS, DAILIES, RERUNS = 12, 3, 3
KILLS = 8


@pytest.mark.timeout(900)
def test_the_operator_killed_at_random_loses_and_duplicates_nothing(
    seed: int,
    world: World,
    tmp_path: Path,
    report: Callable[[str], None],
) -> None:
    rng = random.Random(seed)
    cluster, store, namespace = world.cluster, world.store, world.namespace
    operator: Operator = world.start_operator(tmp_path / "operator-0")
    kubelet = Kubelet(cluster, tmp_path / "pods")
    kills = 0
    one_offs = {f"once-{i}": DAYS[i % 7] for i in range(ONE_OFFS)}
    dailies = [f"daily-{i}" for i in range(DAILIES)]
    reruns = rng.sample(sorted(one_offs), RERUNS)

    status, annotate = cluster.status, cluster.annotate

    def settled() -> bool:
        once = all(
            status(n).get("phase") == "Succeeded"
            and len(status(n).get("recentRuns", [])) == 1 + (n in reruns)
            for n in one_offs
        )
        return once and all(status(n).get("lastProcessedDate") == str(DAYS[-1]) for n in dailies)

    try:
        world.stage()
        for i, (name, day) in enumerate(one_offs.items()):
            cluster.create(CB, world.batch(name, date=str(day), parallelism=1 + i % 2))
        schedule = {"cron": "30 1 * * *", "startDate": str(DAYS[0]), "catchUp": True}
        for name in dailies:
            cluster.create(CB, world.batch(name, schedule=schedule))
        for name in dailies:  # the CronJob's first tick, as its pod would stamp it
            wait_for(lambda n=name: status(n).get("phase") == "Scheduled", what=name)
            annotate(name, c.ANNOTATION_TICK, str(time.time()))

        asked: set[str] = set()
        for k in range(KILLS):
            time.sleep(rng.uniform(0.2, 2.0))
            os.killpg(operator.process.pid, signal.SIGKILL)
            operator.process.popen.wait()
            kills += 1
            for name in reruns:  # a rerun is asked for once the batch's first run has ended
                if name not in asked and status(name).get("phase") == "Succeeded":
                    annotate(name, c.ANNOTATION_RERUN_DATE, str(one_offs[name]))
                    asked.add(name)
            operator = world.start_operator(tmp_path / f"operator-{k + 1}")
        for name in set(reruns) - asked:
            wait_for(lambda n=name: status(n).get("phase") == "Succeeded", timeout=180)
            annotate(name, c.ANNOTATION_RERUN_DATE, str(one_offs[name]))

        try:
            wait_for(settled, timeout=300, what=f"every run to end (seed {seed}, {kills} kills)")
        except AssertionError as e:
            keys = ("phase", "jobName", "nextDate", "lastProcessedDate", "pendingRun", "conditions")
            where = {n: {k: status(n).get(k) for k in keys} for n in [*one_offs, *dailies]}
            raise AssertionError(f"{e}: {json.dumps(where, indent=1)}; Jobs run {kubelet.ran}") from None
        assert kubelet.errors == []
        jobs = Counter(j["metadata"]["labels"][c.LABEL_CLASSIFICATION_BATCH] for j in cluster.jobs())
        runs = {n: status(n)["recentRuns"] for n in [*one_offs, *dailies]}
        expected = {**{n: 1 + (n in reruns) for n in one_offs}, **{n: 7 for n in dailies}}
        assert dict(jobs) == expected, f"one Job per run, none twice (seed {seed})"
        every = [r for rs in runs.values() for r in rs]
        assert all(r["phase"] == "Succeeded" and r["counts"]["total"] == PER_DAY for r in every), seed
        assert [r["date"] for r in runs[dailies[0]]] == [str(d) for d in DAYS], "each date once, in order"
        for r in every:
            rows = list(csv.DictReader(io.StringIO(store.read(r["outputUri"]).decode())))
            assert len(rows) == PER_DAY, f"{r['jobName']}: a row per image (seed {seed})"
        ids = {f"{namespace}.{r['jobName']}" for r in every}
        wait_for(lambda: world.receiver.delivery_ids() >= ids, timeout=60, what=f"the webhooks (seed {seed})")
        assert world.receiver.delivery_ids() == ids, f"one id per run (seed {seed})"
        hooks = len(world.receiver.received)
        report(f"{kills} kills, {len(kubelet.ran)} Jobs run, {hooks} webhooks")
    finally:
        kubelet.stop()
        operator.process.stop()
