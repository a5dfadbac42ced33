"""The gateway with models from the Kubernetes API: the ModelDeployments of its namespace (in the
emulator) name the models, their status gives the predictor's URL (here a real predictor serving
the digits model), and a ModelDeployment that is not ready is a 503, not a crash."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from harness.gateway import TOKEN_SECRET, fresh_redis_url, sign_up
from kubernetes import client
from PIL import Image
from pydantic import SecretStr

from kubeclassify.core import constants as c
from kubeclassify.core.local import PredictorServer, RedisServer
from kubeclassify.core.settings import S3Settings
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.config import GatewayConfig, GatewaySettings


def test_models_and_predictors_come_from_model_deployments(
    kube_api,  # type: ignore[no-untyped-def]
    api_client: client.ApiClient,
    namespace: str,
    digits_predictor: PredictorServer,
    redis_server: RedisServer,
    s3_settings: S3Settings,
    bucket: str,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    plural = c.PLURALS[c.MODEL_DEPLOYMENT]
    for name, description in (("digits", "handwritten digits"), ("pending", None)):
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.MODEL_DEPLOYMENT,
            "metadata": {"name": name},
            "spec": {
                "model": {"uri": f"s3://models/{name}/", "description": description, "labels": ["a", "b"]}
            },
        }
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, namespace, plural, body)
    status = {"status": {"phase": "Ready", "url": digits_predictor.url, "stableVersion": "v7"}}
    custom.patch_namespaced_custom_object_status(c.GROUP, c.VERSION, namespace, plural, "digits", status)

    config = GatewayConfig(
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(TOKEN_SECRET),
        models_source="kubernetes",
        namespace=namespace,
        kubeconfig=str(kube_api.kubeconfig),
        default_model="digits",
        images_uri=f"s3://{bucket}/images",
    )
    from sklearn.datasets import load_digits

    digits = load_digits()
    buf = io.BytesIO()
    Image.fromarray((digits.images[1750] * (255.0 / 16.0)).round().astype(np.uint8)).save(buf, format="PNG")
    with TestClient(create_app(GatewaySettings(gateway=config, s3=s3_settings))) as gw:
        auth = {"Authorization": f"Bearer {sign_up(gw)}"}
        models = gw.get("/v1/models", headers=auth).json()
        assert [(m["name"], m["ready"], m["default"], m["version"]) for m in models] == [
            ("digits", True, True, "v7"),
            ("pending", False, False, None),
        ]
        assert models[0]["description"] == "handwritten digits"
        upload = {"file": ("d.png", buf.getvalue(), "image/png")}
        done = gw.post("/v1/classify", files=upload, headers=auth)
        assert done.status_code == 200 and done.json()["label"] == str(digits.target[1750])
        not_ready = gw.post("/v1/classify", files=upload, data={"model": "pending"}, headers=auth)
        assert not_ready.status_code == 503 and "not ready" in not_ready.json()["detail"]
        assert gw.post("/v1/classify", files=upload, data={"model": "nope"}, headers=auth).status_code == 404
        assert gw.get("/v1/credits", headers=auth).json()["credits"] == 99, (
            "only the classified image is paid"
        )
        assert gw.get("/readyz").status_code == 200


def test_readiness_needs_the_kubernetes_api_when_models_come_from_it(
    redis_server: RedisServer, s3_settings: S3Settings, bucket: str, tmp_path: Path
) -> None:
    from harness.kubeapi_launch import kubeconfig_for

    from kubeclassify.core.local import free_port

    config = GatewayConfig(
        redis_url=SecretStr(fresh_redis_url(redis_server)),
        token_secret=SecretStr(TOKEN_SECRET),
        models_source="kubernetes",
        kubeconfig=str(kubeconfig_for(f"http://127.0.0.1:{free_port()}", tmp_path / "kubeconfig")),
        images_uri=f"s3://{bucket}/images",
    )
    with TestClient(create_app(GatewaySettings(gateway=config, s3=s3_settings))) as gw:
        ready = gw.get("/readyz")
    assert ready.status_code == 503 and ready.json()["models"]
