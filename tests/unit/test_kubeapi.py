"""Every component finds the Kubernetes API one way (`core.kubeapi`), as kubectl does."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.kubeapi_launch import kubeconfig_for
from kubernetes.config import ConfigException

from kubeclassify.core.kubeapi import api_client


def test_the_kubeconfig_named_comes_first_then_the_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = kubeconfig_for("http://127.0.0.1:1001", tmp_path / "named")
    env = kubeconfig_for("http://127.0.0.1:1002", tmp_path / "env")
    monkeypatch.setenv("KUBECONFIG", str(env))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # as in a pod: $KUBECONFIG still wins
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert api_client(str(named)).configuration.host == "http://127.0.0.1:1001"
    assert api_client().configuration.host == "http://127.0.0.1:1002"


def test_without_a_kubeconfig_or_a_cluster_it_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigException):
        api_client()
