"""What the predictor accepts and answers, for the V1 and the Open Inference (V2) protocols.

Inputs, as encoded images (the cheap form on the wire) or as ready tensors:
- V1 `{"instances": [{"b64": "..."}, ...]}` (or `{"image_bytes": {"b64": ...}}`, or bare base64
  strings), or the raw image as the request body with an image Content-Type (how `core.predictor`
  sends it, with the top k asked for in a `KubeClassify-Top-K` header);
- V2 a BYTES tensor of base64 strings (JSON), a UINT8 tensor of pixels [N, H, W, C], or an FP32
  tensor [N, H, W, C] already scaled as the model expects.
Answers carry the label, its score and the top k, with the model's name and version.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from kubeclassify.core.constants import HEADER_TOP_K
from kubeclassify.core.resources import ImageInputSpec


@dataclass
class Batch:
    """One request's images: encoded blobs to decode, or a ready float32 tensor."""

    blobs: list[bytes] | None = None
    tensor: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.blobs) if self.blobs is not None else len(self.tensor)  # type: ignore[arg-type]


def _b64(value: Any, where: str) -> bytes:
    if isinstance(value, dict):
        value = value.get("b64", (value.get("image_bytes") or {}).get("b64"))
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="strict") if value.isascii() else None
    if not isinstance(value, str):
        raise InvalidInput(f'{where}: expected a base64 string or {{"b64": ...}}')
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInput(f"{where}: not valid base64 ({e})") from e


ACCEPTED_V1 = (
    'application/json with {"instances": [{"b64": "<base64 image>"}]},'
    " or the raw image as image/jpeg, image/png, image/webp, image/gif, image/bmp, image/tiff"
)


def parse_v1(payload: dict[str, Any] | bytes, content_type: str | None = None) -> Batch:
    """A V1 request: the raw image body (an image Content-Type), or instances of base64 images (JSON).
    KServe hands over the body undecoded whenever its Content-Type is not JSON."""
    if isinstance(payload, bytes):
        media = (content_type or "").split(";")[0].strip().lower()
        if not media.startswith("image/"):  # KServe parses application/octet-stream as JSON
            raise InvalidInput(f"Content-Type {media or '(none)'} is not accepted: send {ACCEPTED_V1}")
        return Batch(blobs=[payload])
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('expected {"instances": [{"b64": "<base64 image>"}, ...]} or a raw image body')
    return Batch(blobs=[_b64(v, f"instances[{i}]") for i, v in enumerate(instances)])


def parse_v2(request: InferRequest, spec: ImageInputSpec) -> Batch:
    """A V2 request's first input: encoded images, or a ready tensor of the model's shape."""
    if len(request.inputs) != 1:
        raise InvalidInput(f"expected one input tensor, got {len(request.inputs)}")
    tensor = request.inputs[0]
    if tensor.datatype == "BYTES":
        values = tensor.as_numpy().reshape(-1)
        return Batch(blobs=[_b64(v, f"{tensor.name}[{i}]") for i, v in enumerate(values)])
    expected = (spec.height, spec.width, spec.channels)
    if tensor.datatype not in ("UINT8", "FP32"):
        raise InvalidInput(
            f"datatype {tensor.datatype} is not accepted:"
            " send BYTES (base64 images), UINT8 pixels or FP32 tensors"
        )
    shape = tuple(tensor.shape)
    if shape == expected:
        shape = (1, *expected)
    if len(shape) != 4 or shape[1:] != expected:
        raise InvalidInput(
            f"{tensor.name}: shape {list(tensor.shape)} does not match the model's "
            f"[N, {expected[0]}, {expected[1]}, {expected[2]}]"
        )
    try:
        array = tensor.as_numpy().reshape(shape)
    except ValueError as e:
        raise InvalidInput(f"{tensor.name}: the data does not fill shape {list(tensor.shape)}") from e
    return Batch(tensor=array)


MAX_TOP_K = 100  # as many best labels as a batch's rows may carry


def top_k_asked(value: str | None, default: int) -> int:
    """The top k a V1 request asks for in its KubeClassify-Top-K header; the model's default without one."""
    if value is None:
        return default
    try:
        k = int(value)
    except ValueError:
        k = 0
    if not 1 <= k <= MAX_TOP_K:
        raise InvalidInput(f"{HEADER_TOP_K} must be a whole number from 1 to {MAX_TOP_K}, not {value[:20]!r}")
    return k


def v1_response(ranked: list[list[tuple[str, float]]], name: str, version: str) -> dict[str, Any]:
    return {
        "predictions": [
            {"label": r[0][0], "score": r[0][1], "top_k": [{"label": lbl, "score": s} for lbl, s in r]}
            for r in ranked
        ],
        "model_name": name,
        "model_version": version,
    }


def v2_response(
    ranked: list[list[tuple[str, float]]], name: str, version: str, request_id: str | None
) -> InferResponse:
    n, k = len(ranked), len(ranked[0]) if ranked else 0
    outputs = [
        InferOutput("label", [n], "BYTES", [r[0][0] for r in ranked]),
        InferOutput("score", [n], "FP32", [r[0][1] for r in ranked]),
        InferOutput("top_k_labels", [n, k], "BYTES", [lbl for r in ranked for lbl, _ in r]),
        InferOutput("top_k_scores", [n, k], "FP32", [s for r in ranked for _, s in r]),
    ]
    return InferResponse(
        response_id=request_id or "", model_name=name, model_version=version, infer_outputs=outputs
    )
