"""The gateway's /metrics on a port of its own (as the chart runs it): absent from the API's port,
and with several worker processes the samples of all of them, added up. A real gateway process."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from harness.gateway import fresh_redis_url, gateway_env
from prometheus_client.parser import text_string_to_metric_families

from kubeclassify.cli.processes import free_port
from kubeclassify.cli.services import PredictorServer, RedisServer, start_gateway
from kubeclassify.core.settings import S3Settings


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_are_served_apart_from_the_api_and_count_every_worker(
    workers: int,
    tmp_path: Path,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
    digits_predictor: PredictorServer,
) -> None:
    port = free_port()
    settings = gateway_env(
        fresh_redis_url(redis_server),
        s3_settings,
        f"s3://{bucket}/images",
        digits_predictor,
        metrics_port=str(port),
    )
    server = start_gateway(tmp_path / "logs", settings, workers=workers)
    try:
        calls = 40  # each on a connection of its own, so that the workers share them
        assert {status(f"{server.url}/v1/me") for _ in range(calls)} == {401}
        assert status(f"{server.url}/metrics") == 404, "not on the API's port"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        server.stop()
    counted = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "kubeclassify_gateway_requests_total"
        and sample.labels == {"route": "/v1/me", "method": "GET", "status": "401"}
    )
    assert counted == calls
