"""The tenant data boundary, tried as an attacker: each test is one attack on one user's data by
another (or on the machine the worker runs on), and checks that it is refused with a clear error and
that nothing of the victim's was read. Real Redis, SeaweedFS and the digits model; the gateway runs
its local batch backend."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from harness.gateway import digit_png, local_settings, sign_up
from pydantic import SecretStr

from kubeclassify.cli.services import PredictorServer, RedisServer
from kubeclassify.core.model_card import ModelCard
from kubeclassify.core.policy import Policy
from kubeclassify.core.resources import ClassificationBatchSpec, ModelDeploymentSpec
from kubeclassify.core.settings import S3Settings
from kubeclassify.core.sources import InputError, owner_prefix
from kubeclassify.core.storage import ObjectStore
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.config import GatewaySettings
from kubeclassify.inference.batch.worker import BatchJob, run


@pytest.fixture
def settings(
    redis_server: RedisServer, s3_settings: S3Settings, bucket: str, digits_predictor: PredictorServer
) -> GatewaySettings:
    return local_settings(redis_server, s3_settings, bucket, digits_predictor)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(client: TestClient, token: str, index: int = 1770) -> str:
    """Classify a digit as this user; the object's path under their images."""
    png = digit_png(index)[0]
    uid = client.post(
        "/v1/classify", files={"file": ("d.png", png, "image/png")}, headers=auth(token)
    ).json()["uid"]
    return str(client.get(f"/v1/images/{uid}", headers=auth(token)).json()["path"])


def submit(client: TestClient, token: str, body: bytes) -> Any:
    return client.post("/v1/batches", files={"file": ("batch.csv", body, "text/csv")}, headers=auth(token))


def refused_and_nothing_started(client: TestClient, token: str, body: bytes, words: str) -> None:
    credits = client.get("/v1/credits", headers=auth(token)).json()["credits"]
    resp = submit(client, token, body)
    assert resp.status_code == 422 and words in resp.json()["detail"], resp.text
    assert client.get("/v1/batches", headers=auth(token)).json()["total"] == 0
    assert client.get("/v1/credits", headers=auth(token)).json()["credits"] == credits


def test_a_path_column_named_twice_cannot_reach_another_users_image(
    settings: GatewaySettings, bucket: str
) -> None:
    """The gateway checked the first `path`, the worker read the last: Bob's image came back as Alice's."""
    with TestClient(create_app(settings)) as client:
        alice, bob = sign_up(client), sign_up(client, "bob")
        mine, his = upload(client, alice), upload(client, bob)
        body = f"path,path\n{mine},s3://{bucket}/images/bob/{his}\n".encode()
        refused_and_nothing_started(client, alice, body, "the column 'path' appears twice")


def test_a_url_column_named_twice_cannot_read_the_workers_files(settings: GatewaySettings) -> None:
    with TestClient(create_app(settings)) as client:
        alice = sign_up(client)
        body = b"url,url\nhttps://example.com/a.png,file:///etc/hostname\n"
        refused_and_nothing_started(client, alice, body, "the column 'url' appears twice")


@pytest.mark.parametrize("header", [" path", "path ", "url\t"])
def test_a_column_name_padded_with_spaces_is_refused(settings: GatewaySettings, header: str) -> None:
    """A reader that strips names and one that does not would read different columns."""
    with TestClient(create_app(settings)) as client:
        alice = sign_up(client)
        body = f'"{header}",url\nimages/x.png,https://example.com/a.png\n'.encode()
        refused_and_nothing_started(client, alice, body, "has spaces around it")


@pytest.mark.parametrize(
    "value",
    [
        "../bob/{his}",
        "%2e%2e/bob/{his}",
        "./../bob/{his}",
        "s3://{bucket}/images/bob/{his}",
        "/images/bob/{his}",
        "file:///etc/hostname",
    ],
)
def test_the_gateway_refuses_a_path_outside_my_images(
    settings: GatewaySettings, bucket: str, value: str
) -> None:
    with TestClient(create_app(settings)) as client:
        alice, bob = sign_up(client), sign_up(client, "bob")
        his = upload(client, bob)
        body = f"path\n{value.format(his=his, bucket=bucket)}\n".encode()
        refused_and_nothing_started(client, alice, body, "outside your images")


def worker_job(digits_model: Path, name: str, source: dict[str, Any], output: str, **job: Any) -> BatchJob:
    """A shard of a batch classified in process with the digits model, every failure allowed."""
    card = ModelCard.model_validate_json((digits_model / "model-card.json").read_text())
    spec = ClassificationBatchSpec.model_validate(
        {"modelRef": {"name": "digits"}, "input": source, "output": {"uri": output}, "maxFailedFraction": 1.0}
    )
    model = ModelDeploymentSpec.model_validate(
        {"model": {"uri": f"file://{digits_model}"}, "input": card.input.to_k8s()}
    )
    return BatchJob(name=name, spec=spec, model_name="digits", model=model, **job)


class RecordingStore(ObjectStore):
    """The real store, remembering every object it was asked for."""

    def __init__(self, s3: S3Settings) -> None:
        super().__init__(s3)
        self.asked: list[str] = []

    def read(self, uri: str, max_bytes: int | None = None) -> bytes:
        self.asked.append(uri)
        return super().read(uri, max_bytes)


def test_the_worker_keeps_a_gateway_batch_to_its_owners_images_whatever_its_csv_says(
    s3_settings: S3Settings, store: ObjectStore, bucket: str, digits_model: Path, tmp_path: Path
) -> None:
    """A CSV the gateway never checked (written straight to storage, or let through by a gateway bug):
    the worker itself refuses every row that leaves the owner's images, and reads none of them."""
    images = f"s3://{bucket}/images"
    png = digit_png(1770)[0]
    store.write(f"{owner_prefix(images, 'alice')}mine.png", png)
    store.write(f"{owner_prefix(images, 'bob')}his.png", png)
    secret = tmp_path / "secret.txt"
    secret.write_text("not an image, and not Alice's")
    attacks = [
        "../bob/his.png",
        "%2e%2e/bob/his.png",
        "sub/../../bob/his.png",
        "..%2fbob/his.png",
        f"{images}/bob/his.png",
        f"/{bucket}/images/bob/his.png",
        f"file://{secret}",
        f"file://{tmp_path}/no-such-file",
        "bob\\..\\his.png",
    ]
    csv_uri = f"s3://{bucket}/batches/alice/attack/input.csv"
    store.write(csv_uri, ("path\nmine.png\n" + "".join(f"{a}\n" for a in attacks)).encode())
    recording = RecordingStore(s3_settings)
    job = worker_job(
        digits_model,
        "alice-attack",
        {"urls": {"uri": csv_uri, "column": "path"}},
        f"s3://{bucket}/batches/alice/attack/results.csv",
        owner_prefix=owner_prefix(images, "alice"),
    )
    summary = run(job, recording)
    assert summary.counts.classified == 1 and summary.counts.failed == len(attacks)
    rows = list(csv.DictReader(io.StringIO(store.read(summary.output).decode())))
    assert [r["source"] for r in rows][0] == f"{owner_prefix(images, 'alice')}mine.png"
    for row in rows[1:]:
        assert not row["label"] and "outside your images" in row["error"], row
    # the file that exists and the one that does not answer alike: no oracle for the worker's files
    assert rows[-3]["error"].split("' is ")[1] == rows[-2]["error"].split("' is ")[1]
    assert not [u for u in recording.asked if "/bob/" in u or u.startswith("file:")], recording.asked


def test_a_url_batch_of_the_gateway_reads_only_http_urls(
    s3_settings: S3Settings, store: ObjectStore, bucket: str, digits_model: Path, tmp_path: Path
) -> None:
    """`url,url` got `file://` past the gateway once; the worker alone must stop it too."""
    csv_uri = f"s3://{bucket}/batches/alice/urls/input.csv"
    store.write(csv_uri, f"url\nfile:///etc/hostname\ns3://{bucket}/images/bob/his.png\n".encode())
    recording = RecordingStore(s3_settings)
    job = worker_job(
        digits_model,
        "alice-urls",
        {"urls": {"uri": csv_uri, "column": "url"}},
        f"s3://{bucket}/batches/alice/urls/results.csv",
        owner_prefix=owner_prefix(f"s3://{bucket}/images", "alice"),
    )
    summary = run(job, recording)
    assert summary.counts.failed == 2 and summary.counts.classified == 0
    assert not [u for u in recording.asked if "/bob/" in u or u.startswith("file:")], recording.asked


def test_the_worker_process_gets_none_of_the_gateways_secrets() -> None:
    """The worker decodes untrusted images; a decoder exploit there must find no token secret, admin
    password or Redis URL in its environment."""
    from kubeclassify.gateway.local_batches import worker_env

    gateway = {
        "PATH": "/usr/bin",
        "HOME": "/home/kc",
        "PYTHONPATH": "/src",
        "AWS_REGION": "eu-west-1",
        "KUBECLASSIFY_GATEWAY__TOKEN_SECRET": "t" * 40,
        "KUBECLASSIFY_GATEWAY__REDIS_URL": "redis://:pw@redis:6379/0",
        "KUBECLASSIFY_GATEWAY__ADMIN_PASSWORD": "hunter2hunter2",
        "KUBECLASSIFY_ENVIRONMENT": "development",
        "DATABASE_PASSWORD": "elsewhere",
    }
    s3 = S3Settings(endpoint_url="http://s3:8333", access_key_id="k", secret_access_key=SecretStr("s"))
    env = worker_env(gateway, s3)
    assert not [v for v in env.values() if v in ("t" * 40, "hunter2hunter2", "elsewhere")]
    assert not [k for k in env if k.startswith("KUBECLASSIFY_GATEWAY__")]
    assert env["PATH"] == "/usr/bin" and env["KUBECLASSIFY_S3__ENDPOINT_URL"] == "http://s3:8333"
    assert json.dumps(env).count("redis://") == 0


def test_a_manifest_row_cannot_reach_past_the_namespaces_policy(
    s3_settings: S3Settings, store: ObjectStore, bucket: str, digits_model: Path, tmp_path: Path
) -> None:
    """The operator checks the URIs a ClassificationBatch names; a manifest's rows may name any URI,
    so the worker checks each one against its namespace's policy (the copy the operator gives it)."""
    png = digit_png(1770)[0]
    store.write(f"s3://{bucket}/team/data/mine.png", png)
    store.write(f"s3://{bucket}/gateway/images/alice/hers.png", png)
    store.write(f"s3://{bucket}/elsewhere/theirs.png", png)
    rows = [
        "mine.png",
        f"s3://{bucket}/elsewhere/theirs.png",
        f"s3://{bucket}/gateway/images/alice/hers.png",
        f"s3://{bucket}/team/data/../../elsewhere/theirs.png",
        f"file://{tmp_path}/x.png",
    ]
    manifest = f"s3://{bucket}/team/data/manifest.csv"
    store.write(manifest, ("filepath\n" + "".join(f"{r}\n" for r in rows)).encode())
    policy = Policy.model_validate(
        {
            "default": {"read": [f"s3://{bucket}/team/data/"], "write": [f"s3://{bucket}/team/results/"]},
            "reserved": [f"s3://{bucket}/gateway/images/"],
        }
    )
    recording = RecordingStore(s3_settings)
    job = worker_job(
        digits_model,
        "team",
        {"manifest": {"uri": manifest}},
        f"s3://{bucket}/team/results/out.csv",
        policy=policy,
    )
    with pytest.raises(InputError, match="policy refuses this batch: spec.modelRef"):
        run(job, recording)  # its model, a local folder, is outside the policy: refused before any row
    job.policy = policy.model_copy(update={"allow_file": True})
    job.policy.default.read.append(f"file://{digits_model}/")
    summary = run(job, recording)
    assert summary.counts.classified == 1 and summary.counts.failed == len(rows) - 1
    results = list(csv.DictReader(io.StringIO(store.read(summary.output).decode())))
    assert [r["error"] for r in results][0] == ""
    for row in results[1:]:
        assert (
            "is outside what this namespace may use" in row["error"]
            or "gateway" in row["error"]
            or ("'..'" in row["error"])
        ), row
    assert not [u for u in recording.asked if "/elsewhere/" in u or "/gateway/" in u or u.endswith("x.png")]
