"""An operator started for named namespaces handles those and leaves the others alone (its own
module: the other modules run an operator for every namespace)."""

from __future__ import annotations

import secrets
import time

from e2e.conftest import start_operator
from e2e.test_operator_model_deployment import Cluster, model_deployment
from harness.wait import wait_for
from kubernetes import client


def test_an_operator_for_one_namespace_leaves_the_others_alone(
    kube_api,
    api_client: client.ApiClient,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    mine, other = (Cluster(api_client, f"t-{secrets.token_hex(4)}") for _ in range(2))
    running = start_operator(kube_api.kubeconfig, tmp_path, namespaces=f'["{mine.ns}"]')
    try:
        other.create(model_deployment("ignored"))
        mine.create(model_deployment("handled"))
        wait_for(lambda: mine.isvcs(), what="an InferenceService in the watched namespace")
        time.sleep(2)
        assert other.isvcs() == []
    finally:
        running.process.stop()
