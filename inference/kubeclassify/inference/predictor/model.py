"""The KServe model: loads a TensorFlow classifier and answers V1 and V2 requests.

Decoding and preprocessing run on a thread pool, off the event loop and in parallel; the model
runs behind the dynamic batcher. Every failure a client can cause is an InvalidInput (400).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest, InferResponse

from kubeclassify.core.constants import HEADER_TOP_K
from kubeclassify.core.resources import ModelDeploymentSpec
from kubeclassify.core.storage import ObjectStore
from kubeclassify.inference import artifacts
from kubeclassify.inference.predictor import metrics
from kubeclassify.inference.predictor.batching import DynamicBatcher
from kubeclassify.inference.predictor.protocol import (
    Batch,
    parse_v1,
    parse_v2,
    top_k_asked,
    v1_response,
    v2_response,
)
from kubeclassify.inference.preprocess import MAX_BYTES, MAX_PIXELS, ImageError, load_image, scale_pixels
from kubeclassify.inference.ranking import top_k

log = logging.getLogger(__name__)
WARM_UP_UP_TO = 64  # larger padded shapes are traced on first use


class ModelMissingError(RuntimeError):
    """The model or its labels cannot be found or read."""


class ImageClassifier(Model):
    """One ModelDeployment's model, served."""

    def __init__(
        self,
        name: str,
        spec: ModelDeploymentSpec,
        model_dir: Path | None = None,
        store: ObjectStore | None = None,
        top_k: int = 5,
        max_image_bytes: int = MAX_BYTES,
        max_pixels: int = MAX_PIXELS,
        decode_workers: int | None = None,
    ) -> None:
        super().__init__(name)
        self.spec = spec
        self.model_dir = model_dir
        self.store = store or ObjectStore()
        self.top_k = top_k
        self.max_image_bytes = max_image_bytes
        self.max_pixels = max_pixels
        self.version = ""
        self.labels: list[str] = []
        self._decoder = concurrent.futures.ThreadPoolExecutor(
            decode_workers or os.cpu_count() or 2, thread_name_prefix="decode"
        )
        self._batcher: DynamicBatcher | None = None
        self._loaded: artifacts.LoadedModel | None = None

    # -- loading ----------------------------------------------------------------------------------

    def load(self) -> bool:
        """Load the model from model_dir (KServe's storage initializer) or from its URI."""
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        try:
            loaded, self.labels, self.version = artifacts.load_for_deployment(
                self.spec.model, self.store, self.model_dir
            )
        except artifacts.ModelError as e:
            raise ModelMissingError(str(e)) from e
        card = loaded.card
        if card is not None and card.input != self.spec.input:
            log.warning(
                "the ModelDeployment's input differs from the model card's",
                extra={"spec_input": self.spec.input.to_k8s(), "card_input": card.input.to_k8s()},
            )
        batching = self.spec.batching
        self._batcher = DynamicBatcher(
            loaded.predict,
            batching.max_batch_size,
            batching.max_latency_ms / 1000,
            observe=self._observe_batch,
        )
        inp = self.spec.input
        for size in (b for b in self._batcher.buckets if b <= WARM_UP_UP_TO):
            out = self._batcher.run_padded(np.zeros((size, inp.height, inp.width, inp.channels), np.float32))
            if out.shape != (size, len(self.labels)):
                raise ModelMissingError(
                    f"the model answers {out.shape[1:]} per image, but there are {len(self.labels)} labels;"
                    f" or its input is not {inp.height}x{inp.width}x{inp.channels} as spec.input says"
                )
        self._loaded = loaded
        self.ready = True
        log.info(
            "model ready",
            extra={
                "model": self.name,
                "version": self.version,
                "format": loaded.format,
                "labels": len(self.labels),
            },
        )
        return self.ready

    # -- serving ---------------------------------------------------------------------------------

    def _observe_batch(self, size: int, waits: list[float]) -> None:
        metrics.BATCH_SIZE.labels(self.name).observe(size)
        for w in waits:
            metrics.QUEUE_SECONDS.labels(self.name).observe(w)

    def _prepare(self, blob: bytes) -> np.ndarray:
        return load_image(blob, self.spec.input, self.max_image_bytes, self.max_pixels)

    async def _tensor(self, batch: Batch) -> np.ndarray:
        if batch.tensor is not None:
            if batch.tensor.dtype == np.uint8:
                return scale_pixels(batch.tensor.astype(np.float32), self.spec.input).astype(np.float32)
            return batch.tensor.astype(np.float32, copy=False)
        loop = asyncio.get_running_loop()
        assert batch.blobs is not None
        results = await asyncio.gather(
            *(loop.run_in_executor(self._decoder, self._prepare, b) for b in batch.blobs),
            return_exceptions=True,
        )
        for i, r in enumerate(results):
            if isinstance(r, ImageError):
                where = f"image {i}: " if len(results) > 1 else ""
                raise InvalidInput(f"{where}{r}")
            if isinstance(r, BaseException):
                raise r
        pixels = np.stack(results).astype(np.float32)  # type: ignore[arg-type]
        return scale_pixels(pixels, self.spec.input).astype(np.float32)

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        protocol = "v2" if isinstance(payload, InferRequest) else "v1"
        started = time.monotonic()
        outcome = "error"
        try:
            if isinstance(payload, InferRequest):
                batch = parse_v2(payload, self.spec.input)
                k = int((payload.parameters or {}).get("top_k", self.top_k))
            else:
                batch = parse_v1(payload, (headers or {}).get("content-type"))
                k = top_k_asked((headers or {}).get(HEADER_TOP_K.lower()), self.top_k)
            if not len(batch):
                raise InvalidInput("no images in the request")
            assert self._batcher is not None
            probabilities = await self._batcher.submit(await self._tensor(batch))
            ranked = top_k(probabilities, self.labels, max(k, 1))
            metrics.IMAGES.labels(self.name).inc(len(ranked))
            outcome = "ok"
            if isinstance(payload, InferRequest):
                response: InferResponse | dict[str, Any] = v2_response(
                    ranked, self.name, self.version, payload.id
                )
            else:
                response = v1_response(ranked, self.name, self.version)
            return response
        except InvalidInput:
            outcome = "invalid"
            raise
        finally:
            metrics.REQUESTS.labels(self.name, protocol, outcome).inc()
            metrics.REQUEST_SECONDS.labels(self.name, protocol).observe(time.monotonic() - started)
