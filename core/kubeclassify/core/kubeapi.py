"""A client of the Kubernetes API, found the one way every component finds it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def api_client(kubeconfig: str | None = None) -> ApiClient:
    """The kubeconfig named, else $KUBECONFIG, else the pod's service account (in a cluster), else
    ~/.kube/config: kubectl's order. Raises kubernetes' ConfigException (or OSError) when none works."""
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    cfg = client.Configuration()
    from_env = os.environ.get("KUBECONFIG")  # read now: kubernetes reads it once, when imported
    if not from_env:
        try:
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        except config.ConfigException:
            pass
    default = str(Path.home() / ".kube" / "config")
    config.load_kube_config(config_file=from_env or default, client_configuration=cfg)
    return client.ApiClient(cfg)
