from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config


@pytest.fixture(scope="session")
def api_client(kube_api) -> Iterator[client.ApiClient]:  # type: ignore[no-untyped-def]
    api = config.new_client_from_config(config_file=str(kube_api.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def batch_api(api_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)
