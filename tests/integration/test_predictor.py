"""The predictor serves the digits model over KServe's V1 and V2 protocols: right labels for
held-out digits as PNG and JPEG, from plain HTTP and from tritonclient; a clear 4xx for every bad
input while staying healthy; and concurrent requests batched into fewer model calls."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import tritonclient.http as triton
import yaml
from PIL import Image

from kubeclassify.cli.processes import free_port
from kubeclassify.cli.services import PredictorServer, start_predictor
from kubeclassify.core import predictor as predictor_client
from kubeclassify.core.constants import HEADER_TOP_K
from kubeclassify.core.model_card import ModelCard
from kubeclassify.inference.datasets import materialize, samples_from
from kubeclassify.inference.training import TrainConfig, split

ROOT = Path(__file__).resolve().parents[2]

MAX_BODY = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def card(digits_model: Path) -> ModelCard:
    return ModelCard.model_validate_json((digits_model / "model-card.json").read_text())


@pytest.fixture(scope="module")
def predictor(
    digits_model: Path, card: ModelCard, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictorServer]:
    base = tmp_path_factory.mktemp("predictor")
    spec = {
        "apiVersion": "kubeclassify.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "digits"},
        "spec": {
            "model": {"uri": f"file://{digits_model}"},
            "input": card.input.to_k8s(),
            "batching": {"maxBatchSize": 32, "maxLatencyMs": 20},
        },
    }
    (base / "digits.yaml").write_text(yaml.safe_dump(spec))
    server = start_predictor(
        base / "digits.yaml", base, "digits", extra_args=["--max_body_bytes", str(MAX_BODY)]
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def held_out(card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """Held-out digits (never trained on) at their own 8x8 size, and their labels."""
    from sklearn.datasets import load_digits

    data = materialize(
        samples_from(
            "digits", __import__("kubeclassify.core.storage", fromlist=["ObjectStore"]).ObjectStore()
        ),
        card.input,
        "digits",
    )
    _, _, test = split(data, TrainConfig())
    digits = load_digits()
    pixels = (digits.images[test] * (255.0 / 16.0)).round().astype(np.uint8)
    return pixels, digits.target[test]


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            return e.code, json.loads(text)
        except json.JSONDecodeError:
            return e.code, text


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_v1_base64_labels_held_out_digits(
    predictor: PredictorServer, held_out: tuple[np.ndarray, np.ndarray], card: ModelCard, fmt: str
) -> None:
    pixels, labels = held_out
    body = json.dumps({"instances": [{"b64": b64(encode(p, fmt))} for p in pixels]}).encode()
    status, out = post(f"{predictor.url}/v1/models/digits:predict", body)
    assert status == 200
    predicted = [p["label"] for p in out["predictions"]]
    accuracy = np.mean([p == str(t) for p, t in zip(predicted, labels, strict=True)])
    assert accuracy >= 0.9
    assert out["model_name"] == "digits" and out["model_version"] == card.version
    first = out["predictions"][0]
    scores = [t["score"] for t in first["top_k"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert first["top_k"][0] == {"label": first["label"], "score": first["score"]}


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_v1_raw_image_body(
    predictor: PredictorServer, held_out: tuple[np.ndarray, np.ndarray], fmt: str, mime: str
) -> None:
    pixels, labels = held_out
    right = 0
    for p, t in zip(pixels[:20], labels[:20], strict=True):
        status, out = post(f"{predictor.url}/v1/models/digits:predict", encode(p, fmt), mime)
        assert status == 200
        right += out["predictions"][0]["label"] == str(t)
    assert right >= 18


def test_v2_json_and_ready_tensors(
    predictor: PredictorServer, held_out: tuple[np.ndarray, np.ndarray], card: ModelCard
) -> None:
    pixels, labels = held_out
    n = 16
    request = {
        "id": "req-1",
        "inputs": [
            {
                "name": "image",
                "shape": [n],
                "datatype": "BYTES",
                "data": [b64(encode(p, "PNG")) for p in pixels[:n]],
            }
        ],
        "parameters": {"top_k": 3},
    }
    status, out = post(f"{predictor.url}/v2/models/digits/infer", json.dumps(request).encode())
    assert status == 200, out
    outputs = {o["name"]: o for o in out["outputs"]}
    assert out["model_version"] == card.version and out["id"] == "req-1"
    by_bytes = outputs["label"]["data"]
    assert np.mean([a == str(b) for a, b in zip(by_bytes, labels[:n], strict=True)]) >= 0.9
    assert outputs["top_k_labels"]["shape"] == [n, 3]
    prepared = np.stack(
        [np.asarray(Image.fromarray(p).resize((32, 32), Image.Resampling.BILINEAR)) for p in pixels[:n]]
    )[..., None]
    tensor = {
        "inputs": [
            {
                "name": "pixels",
                "shape": [n, 32, 32, 1],
                "datatype": "UINT8",
                "data": prepared.reshape(-1).tolist(),
            }
        ]
    }
    status, out = post(f"{predictor.url}/v2/models/digits/infer", json.dumps(tensor).encode())
    assert status == 200, out
    assert {o["name"]: o for o in out["outputs"]}["label"]["data"] == by_bytes


def test_tritonclient_works_unmodified(
    predictor: PredictorServer, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    pixels, labels = held_out
    client = triton.InferenceServerClient(predictor.url.removeprefix("http://"))
    assert client.is_model_ready("digits")
    images = triton.InferInput("image", [8], "BYTES")
    images.set_data_from_numpy(
        np.array([b64(encode(p, "JPEG")) for p in pixels[:8]], dtype=object), binary_data=False
    )
    result = client.infer(
        "digits",
        [images],
        outputs=[triton.InferRequestedOutput("label", binary_data=False)],
        headers={"Content-Type": "application/json"},
    )
    got = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    assert sum(g == str(t) for g, t in zip(got, labels[:8], strict=True)) >= 7
    prepared = (
        np.stack(
            [np.asarray(Image.fromarray(p).resize((32, 32), Image.Resampling.BILINEAR)) for p in pixels[:8]]
        )[..., None].astype(np.float32)
        / 255.0
    )
    tensor = triton.InferInput("scaled", [8, 32, 32, 1], "FP32")
    tensor.set_data_from_numpy(prepared, binary_data=True)
    result = client.infer(
        "digits", [tensor], outputs=[triton.InferRequestedOutput("score", binary_data=True)]
    )
    assert result.as_numpy("score").shape == (8,)


def bomb(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_bad_inputs_get_clear_4xx_and_the_server_stays_healthy(
    predictor: PredictorServer, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    v1 = f"{predictor.url}/v1/models/digits:predict"
    v2 = f"{predictor.url}/v2/models/digits/infer"
    jpeg = encode(held_out[0][0], "JPEG")
    cases: list[tuple[str, str, bytes, str, int, str]] = [
        ("empty body", v1, b"", "image/png", 400, "empty"),
        ("not an image", v1, b"hello, I am text", "image/png", 400, "not an image"),
        ("truncated JPEG", v1, jpeg[: len(jpeg) // 2], "image/jpeg", 400, "corrupt or truncated"),
        ("bomb", v1, bomb(10000, 10000), "image/png", 400, "limit is 40000000 pixels"),
        ("just under Pillow's limit", v1, bomb(9400, 9400), "image/png", 400, "limit is 40000000 pixels"),
        ("oversized body", v1, b"\xff" * (MAX_BODY + 1), "image/jpeg", 413, "limit is"),
        ("no instances", v1, b'{"inputs": []}', "application/json", 400, "instances"),
        ("bad base64", v1, b'{"instances": [{"b64": "***"}]}', "application/json", 400, "not valid base64"),
        ("malformed JSON", v1, b'{"instances": [', "application/json", 400, ""),
        # KServe reads application/octet-stream as JSON: an image must come as its own type
        (
            "an image as octet-stream",
            v1,
            jpeg,
            "application/octet-stream",
            400,
            "Unrecognized request format",
        ),
        (  # what `curl -d '{"instances": ...}'` sends without -H: the error names what is accepted
            "JSON sent as a form",
            v1,
            json.dumps({"instances": [{"b64": b64(jpeg)}]}).encode(),
            "application/x-www-form-urlencoded",
            400,
            "Content-Type application/x-www-form-urlencoded is not accepted: send application/json",
        ),
        (
            "wrong shape",
            v2,
            json.dumps(
                {"inputs": [{"name": "x", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.0] * 784}]}
            ).encode(),
            "application/json",
            400,
            "does not match the model's [N, 32, 32, 1]",
        ),
        (
            "wrong dtype",
            v2,
            json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}).encode(),
            "application/json",
            400,
            "INT64",
        ),
        ("unknown model", f"{predictor.url}/v1/models/letters:predict", jpeg, "image/jpeg", 404, "letters"),
    ]
    for name, url, body, mime, want, fragment in cases:
        status, out = post(url, body, mime)
        assert status == want, (name, status, out)
        assert fragment in json.dumps(out), (name, out)

    # V2 binary extension with raw JPEG bytes in a BYTES tensor: KServe cannot decode them as UTF-8.
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(jpeg) + 4},
                }
            ]
        }
    ).encode()
    body = header + len(jpeg).to_bytes(4, "little") + jpeg
    req = urllib.request.Request(
        v2,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400 and "base64" in e.value.read().decode()

    with urllib.request.urlopen(f"{predictor.url}/v2/models/digits/ready", timeout=10) as resp:
        assert resp.status == 200
    assert post(v1, jpeg, "image/jpeg")[0] == 200


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    match = re.search(rf'^{name}\{{model="digits"\}} ([0-9.e+]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_concurrent_requests_are_batched(
    predictor: PredictorServer, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    pixels, labels = held_out
    calls_before = metric(predictor.url, "kubeclassify_predictor_batch_size_count")
    images_before = metric(predictor.url, "kubeclassify_predictor_batch_size_sum")

    def one(i: int) -> tuple[int, str]:
        status, out = post(f"{predictor.url}/v1/models/digits:predict", encode(pixels[i], "PNG"), "image/png")
        assert status == 200
        return i, out["predictions"][0]["label"]

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(32)))
    calls = metric(predictor.url, "kubeclassify_predictor_batch_size_count") - calls_before
    images = metric(predictor.url, "kubeclassify_predictor_batch_size_sum") - images_before
    assert images == 32
    assert calls < 32, f"{calls} model calls for 32 requests"
    single = {
        i: post(f"{predictor.url}/v1/models/digits:predict", encode(pixels[i], "PNG"), "image/png")[1][
            "predictions"
        ][0]["label"]
        for i in range(32)
    }
    assert dict(answers) == single, "each caller gets its own answer"


def test_all_metric_families_are_exported(predictor: PredictorServer) -> None:
    text = urllib.request.urlopen(f"{predictor.url}/metrics", timeout=10).read().decode()
    for family in (
        "requests_total",
        "request_seconds_bucket",
        "images_total",
        "batch_size_bucket",
        "queue_seconds_bucket",
    ):
        assert f"kubeclassify_predictor_{family}" in text, family
    assert 'outcome="invalid"' in text and 'outcome="ok"' in text


def test_a_missing_model_fails_the_start_with_a_clear_message(tmp_path: Path) -> None:
    from kubeclassify.cli.processes import LaunchError

    (tmp_path / "empty").mkdir()
    spec = {"metadata": {"name": "ghost"}, "spec": {"model": {"uri": f"file://{tmp_path / 'empty'}"}}}
    (tmp_path / "ghost.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(LaunchError, match="no model at"):
        start_predictor(tmp_path / "ghost.yaml", tmp_path, "ghost", timeout=120)


def test_serve_without_its_model_exits_2_with_one_line(tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / "examples" / "modeldeployment-digits.yaml").read_text())
    spec["spec"]["model"] = {"uri": "file:///nonexistent/digits/"}
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECLASSIFY_")}
    done = subprocess.run(
        [sys.executable, "-m", "kubeclassify.core.cli", "serve", "--spec", str(tmp_path / "md.yaml"),
         "--model_dir", str(tmp_path / "models"), "--http_port", "0"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("kubeclassify serve: cannot serve: ") and "/nonexistent/digits" in last
    assert "Traceback" not in done.stderr


def test_the_predictor_client_sends_the_image_and_asks_for_its_top_k(
    predictor: PredictorServer, held_out: tuple[np.ndarray, np.ndarray], card: ModelCard
) -> None:
    """core.predictor, as the gateway and the batch worker call it: the raw image, its top k."""
    pixels, labels = held_out
    png = encode(pixels[0], "PNG")

    async def calls() -> tuple[Any, ...]:
        async with aiohttp.ClientSession() as session:

            async def ask(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await predictor_client.predict(session, *args, timeout=30, **kwargs)
                except (predictor_client.ImageRefused, predictor_client.PredictorUnavailable) as e:
                    return e

            return await asyncio.gather(
                ask(predictor.url, "digits", png, "image/png", top_k=2),
                ask(predictor.url, "digits", png, "image/png"),
                ask(predictor.url, "digits", b"hello, I am text", "image/png"),
                ask(predictor.url, "letters", png, "image/png"),
                ask(f"http://127.0.0.1:{free_port()}", "digits", png, "image/png"),
                predictor_client.describe(session, predictor.url, "digits"),
                predictor_client.describe(session, predictor.url, "letters"),
            )

    two, default, text, unknown, away, card_served, no_card = asyncio.run(calls())
    assert len(two.top_k) == 2 and two.label == str(labels[0])
    assert two.model_name == "digits" and two.model_version == card.version
    assert len(default.top_k) == 5 and default.top_k[:2] == two.top_k
    assert isinstance(text, predictor_client.ImageRefused) and "not an image" in str(text)
    assert isinstance(unknown, predictor_client.PredictorUnavailable) and "404" in str(unknown)
    assert isinstance(away, predictor_client.PredictorUnavailable)
    assert card_served is not None and card_served["version"] == card.version and no_card is None


@pytest.mark.parametrize("asked", ["0", "101", "many", "-1"])
def test_a_top_k_out_of_range_is_refused(predictor: PredictorServer, held_out: Any, asked: str) -> None:
    request = urllib.request.Request(
        f"{predictor.url}/v1/models/digits:predict",
        data=encode(held_out[0][0], "PNG"),
        headers={"Content-Type": "image/png", HEADER_TOP_K: asked},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    assert f"{HEADER_TOP_K} must be a whole number from 1 to 100" in refused.value.read().decode()
