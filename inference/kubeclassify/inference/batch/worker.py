"""One shard of a batch: read its images, classify them, write its part, publish when complete.

A pipeline, not a loop: a thread pool fetches and decodes a window of images ahead (S3 GETs and
Pillow's decoding release the GIL), while full, fixed-shape batches go to the model: on a CPU, one
model call per core (up to four) at a time (see `threads`). Rows come out in input order. An
image that cannot be fetched or decoded becomes a row with its error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import io
import itertools
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, TypeVar

import aiohttp
import numpy as np
from PIL import Image

from kubeclassify.core import predictor as predictor_client
from kubeclassify.core.constants import LABEL_OWNER
from kubeclassify.core.fetch import FetchError, FetchPolicy, fetch
from kubeclassify.core.policy import Policy, batch_denials, describe, uri_problem
from kubeclassify.core.predictor import Prediction
from kubeclassify.core.progress import ShardProgress
from kubeclassify.core.resources import (
    BatchCounts,
    ClassificationBatchSpec,
    ImageCopySpec,
    ModelDeploymentSpec,
)
from kubeclassify.core.sources import InputError, Item, extra_columns, items, shard_of
from kubeclassify.core.storage import ObjectStore, StorageError, join
from kubeclassify.inference import artifacts, threads
from kubeclassify.inference.batch.output import (
    Layout,
    PartWriter,
    publish_if_complete,
    published,
)
from kubeclassify.inference.predictor.batching import run_padded
from kubeclassify.inference.preprocess import ImageError, decode, prepare, scale_pixels
from kubeclassify.inference.ranking import top_k

# One input's outcome so far: (item, decoded pixels, error).
Outcome = tuple[Item, np.ndarray | None, str | None]

log = logging.getLogger(__name__)


@dataclass
class BatchJob:
    """Everything one shard needs."""

    name: str
    spec: ClassificationBatchSpec
    model_name: str
    model: ModelDeploymentSpec | None  # mode remote needs none: the predictor has the model
    date: dt.date | None = None
    shard: int = 0
    shards: int = 1
    run_time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(microsecond=0))
    workers: int = 16
    model_streams: int = 0  # concurrent model calls; 0: one per CPU up to 4 (one on a GPU)
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)
    predictor_url: str | None = None  # mode remote: the ModelDeployment's predictor
    rerun: str | None = None  # classify again and replace published results, as this run
    remote_version: str = ""  # mode remote: the model version the predictor reports
    owner_prefix: str | None = None  # a gateway batch: its rows may name only URLs and paths under it
    owner: str | None = None  # the gateway user the batch is labelled with
    policy: Policy | None = None  # the namespace's policy (the operator's copy): checked again here
    progress_every: float = 5.0  # seconds between progress lines (the operator reads the last one)
    max_images: int | None = None  # the input's first N images only: what the run was admitted for


@dataclass
class Summary:
    """What a shard did: counts, speed and where the results are (the pod's termination message)."""

    batch: str
    date: str
    shard: int
    shards: int
    counts: BatchCounts
    images_per_second: float
    output: str
    published: bool
    already_published: bool = False
    failed_fraction_exceeded: bool = False

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "counts": self.counts.model_dump()})


def run(job: BatchJob, store: ObjectStore) -> Summary:
    """Classify this shard's images, write its part, and publish the results when all parts exist."""
    if job.spec.mode == "remote" and not job.predictor_url:
        raise InputError("mode remote needs the predictor's URL: --predictor-url (the operator sets it)")
    if job.spec.mode == "remote" and job.spec.output.copy_images is not None:
        raise InputError(
            "output.copyImages needs mode inProcess: the copies are made from the decoded images"
        )
    date = job.date.isoformat() if job.date else ""
    output = job.spec.output.uri.format(date=date) if job.date else job.spec.output.uri
    layout = Layout(output, job.shards, job.rerun)
    done = published(store, layout) if job.rerun is None else None
    if done is not None:
        log.info("already published; nothing to do", extra={"output": output})
        return Summary(
            job.name, date, job.shard, job.shards, BatchCounts.read(done["counts"]), 0.0, output, True, True
        )

    if job.policy is not None:
        owned = {LABEL_OWNER: job.owner} if job.owner else None
        denials = batch_denials(job.policy, "", job.spec, owned, job.model)
        if denials:
            raise InputError(f"the platform's policy refuses this batch: {describe(denials)}")
    extra = (["copy"] if job.spec.output.copy_images else []) + extra_columns(job.spec, store)
    copies: dict[int, str] = {}
    counts = BatchCounts()
    every = _permitted(job, _admitted(job, items(job.spec, store, job.date, job.owner_prefix), counts))
    mine = (it for it in every if shard_of(it.source, job.shards) == job.shard)
    total = _Total(job, store)
    if job.spec.mode == "remote":
        version = ""
        results: Iterator[tuple[Item, list[tuple[str, float]] | None, str | None]] = _remote(job, store, mine)
    else:
        if job.model is None:
            raise InputError("mode inProcess needs the ModelDeployment: --model-deployment")
        streams = threads.model_streams(job.model_streams)
        threads.configure(streams)
        loaded, labels, version = artifacts.load_for_deployment(job.model.model, store)
        results = _ranked(
            _classified(job, store, mine, loaded.predict, copies, streams), labels, job.spec.output.top_k
        )
    part = PartWriter()
    started = time.monotonic()
    with _reporting(job, counts, total, started):
        for item, ranked, error in results:
            _row(job, item, ranked, error, version, copies, counts, part)
            if job.progress_every == 0:  # a line per image
                _progress(job, counts, total.value, counts.total / (time.monotonic() - started))
    seconds = time.monotonic() - started
    rate = counts.total / seconds if seconds > 0 else 0.0
    _progress(job, counts, counts.total, rate)  # the last line says where the shard ended
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    log.info("classified", extra={"shard": job.shard, **counts.model_dump(), "seconds": round(seconds, 2)})
    part.upload(store, layout.part(job.shard))
    store.write(
        layout.part_summary(job.shard),
        json.dumps({"counts": counts.model_dump()}).encode(),
        content_type="application/json",
    )
    manifest = {
        "batch": job.name,
        "date": date,
        "model_name": job.model_name,
        "model_version": version or job.remote_version,
        "shards": job.shards,
    }
    is_published = publish_if_complete(store, layout, job.spec.output.format, extra, manifest)
    exceeded = counts.total > 0 and counts.failed / counts.total > job.spec.max_failed_fraction
    return Summary(
        job.name,
        date,
        job.shard,
        job.shards,
        counts,
        round(rate, 2),
        output,
        is_published,
        failed_fraction_exceeded=exceeded,
    )


def _row(
    job: BatchJob,
    item: Item,
    ranked: list[tuple[str, float]] | None,
    error: str | None,
    version: str,
    copies: dict[int, str],
    counts: BatchCounts,
    part: PartWriter,
) -> None:
    """One image's result row, written to the shard's part and counted."""
    counts.total += 1
    row: dict[str, Any] = {
        "id": item.seq,
        "source": item.source,
        "date": item.date,
        "label": "",
        "score": "",
        "top_k": "",
        "model_name": job.model_name,
        "model_version": version or job.remote_version,
        "error": error or "",
        "time": job.run_time.isoformat(),
        **item.extra,
    }
    if job.spec.output.copy_images:
        row["copy"] = copies.pop(item.seq, "")
    if error is None and ranked is not None:
        row.update(
            label=ranked[0][0],
            score=round(ranked[0][1], 6),
            top_k=json.dumps([{"label": lbl, "score": round(s, 6)} for lbl, s in ranked]),
        )
        counts.classified += 1
    else:
        counts.failed += 1
    part.write(item.seq, row)


@contextlib.contextmanager
def _reporting(job: BatchJob, counts: BatchCounts, total: _Total, started: float) -> Iterator[None]:
    """The shard's progress line every `progress_every` seconds while it runs, from a thread of
    its own: a shard waiting on slow images still reports (its speed falling), as it would not
    if lines were written only as images finish."""
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(job.progress_every):
            _progress(job, counts, total.value, counts.total / (time.monotonic() - started))

    thread = threading.Thread(target=report, name="progress", daemon=True)
    if job.progress_every > 0:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()


def _progress(job: BatchJob, counts: BatchCounts, total: int | None, rate: float) -> None:
    """A live line in a terminal; otherwise the progress line the operator reads from the pod's log."""
    if sys.stderr.isatty():
        of = f"/{total}" if total is not None else ""
        sys.stderr.write(
            f"\rshard {job.shard}: {counts.total}{of} images, {counts.failed} failed, {rate:.1f}/s "
        )
    else:
        now = dt.datetime.now(dt.UTC)
        progress = ShardProgress(job.shard, counts.total, counts.failed, total, round(rate, 2))
        sys.stderr.write(progress.line(now) + "\n")
    sys.stderr.flush()


def _admitted(job: BatchJob, todo: Iterator[Item], counts: BatchCounts) -> Iterator[Item]:
    """The input's first `max_images` items (all of them without a limit). Every shard reads the
    same listing in the same order, so the shards together classify exactly the first N; each
    counts the items past the limit that fall to it as `unadmitted`."""
    for n, item in enumerate(todo):
        if job.max_images is None or n < job.max_images:
            yield item
        elif shard_of(item.source, job.shards) == job.shard:
            counts.unadmitted = (counts.unadmitted or 0) + 1


class _Total:
    """The shard's number of images, counted by a second, lighter pass over the input (a listing or
    a CSV, no images) on a thread of its own: the work streams its input and never holds it whole,
    so the total, and with it an ETA, is known once this count ends. A failed count leaves it
    unknown; the work itself reports any problem with the input."""

    def __init__(self, job: BatchJob, store: ObjectStore) -> None:
        self.value: int | None = None
        self._job, self._store = job, store
        threading.Thread(target=self._count, name="count", daemon=True).start()

    def _count(self) -> None:
        job = self._job
        try:
            todo = itertools.islice(items(job.spec, self._store, job.date, job.owner_prefix), job.max_images)
            self.value = sum(1 for it in todo if shard_of(it.source, job.shards) == job.shard)
        except Exception as e:  # noqa: BLE001 - the count only informs the ETA
            log.debug("could not count the input", extra={"error": str(e)})


def _permitted(job: BatchJob, todo: Iterator[Item]) -> Iterator[Item]:
    """Each item, refused when the policy does not let this batch read what it names (a manifest row
    may name any URI: the operator's check of the spec cannot see it)."""
    policy = job.policy
    for item in todo:
        named = item.source and not item.refused and not item.source.startswith(("http://", "https://"))
        why = uri_problem(item.source, policy.default.read, policy, job.owner) if policy and named else None
        yield replace(item, refused=f"{item.source[:80]!r} {why}") if why else item


def _read(item: Item, store: ObjectStore, policy: FetchPolicy) -> bytes:
    if item.refused:
        raise ImageError(item.refused)
    if not item.source:
        raise ImageError("empty path")
    if item.source.startswith(("http://", "https://")):
        return fetch(item.source, policy)
    return store.read(item.source, max_bytes=policy.max_bytes)


def _ranked(
    classified: Iterator[Outcome], labels: list[str], k: int
) -> Iterator[tuple[Item, list[tuple[str, float]] | None, str | None]]:
    for item, probabilities, error in classified:
        yield (
            item,
            (top_k(probabilities[None, :], labels, k)[0] if probabilities is not None else None),
            error,
        )


T = TypeVar("T")


class _Predictor:
    """The predictor's client (`core.predictor`) for the worker's threads: one connection pool on
    an event loop of its own. A call returns at once with its future, so a thread that read an
    image goes on to read the next while the predictor works; the caller's window bounds how many
    images are at the predictor at once."""

    def __init__(self, job: BatchJob, connections: int) -> None:
        self.base, self.name, self.top_k = job.predictor_url or "", job.model_name, job.spec.output.top_k
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="predictor", daemon=True)
        self.thread.start()
        self.session = self._wait(self._open(connections))

    async def _open(self, connections: int) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))

    def _wait(self, call: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(call, self.loop).result()

    def submit(self, data: bytes) -> concurrent.futures.Future[Prediction]:
        """Send one encoded image; its answer comes in the future."""
        media_type = predictor_client.image_type(data)
        if media_type is None:  # as the gateway refuses it, before any work
            raise ImageError("not an image the predictor decodes: JPEG, PNG, GIF, BMP, TIFF or WebP")
        return asyncio.run_coroutine_threadsafe(self._predict(data, media_type), self.loop)

    async def _predict(self, data: bytes, media_type: str) -> Prediction:
        try:
            return await predictor_client.predict(
                self.session, self.base, self.name, data, media_type, timeout=60, top_k=self.top_k
            )
        except predictor_client.ImageRefused as e:
            raise ImageError(f"the predictor refused the image: {e}") from e

    def close(self) -> None:
        self._wait(self.session.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _remote(
    job: BatchJob, store: ObjectStore, todo: Iterator[Item]
) -> Iterator[tuple[Item, list[tuple[str, float]] | None, str | None]]:
    """(item, top k, error) for every item, in input order, classified by the predictor: `workers`
    threads read images, and up to twice as many images are at the predictor at once, so that it
    fills one batch while it runs another."""
    in_flight = job.workers * 2
    client = _Predictor(job, in_flight)

    def ask(item: Item) -> concurrent.futures.Future[Prediction]:
        return client.submit(_read(item, store, job.fetch_policy))

    window: deque[tuple[Item, concurrent.futures.Future[concurrent.futures.Future[Prediction]]]] = deque()
    try:
        with concurrent.futures.ThreadPoolExecutor(job.workers, thread_name_prefix="read") as pool:
            while True:
                while len(window) < in_flight and (nxt := next(todo, None)) is not None:
                    window.append((nxt, pool.submit(ask, nxt)))
                if not window:
                    return
                item, future = window.popleft()
                try:
                    answer = future.result().result()
                except (ImageError, StorageError, FetchError) as e:
                    yield item, None, str(e)
                    continue
                job.remote_version = answer.model_version
                yield item, answer.top_k, None
    finally:
        client.close()


def _write_copy(store: ObjectStore, image: Image.Image, copy: ImageCopySpec, prefix: str, item: Item) -> str:
    """A re-encoded copy of the image, at most copy.max_size on its longest side; returns its URI."""
    small = image.copy()
    small.thumbnail((copy.max_size, copy.max_size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format=copy.format.upper(), quality=copy.quality)
    stem = PurePosixPath(item.source.split("?", 1)[0]).stem or "image"
    uri = join(prefix, f"{item.seq:09d}-{stem}.{'jpg' if copy.format == 'jpeg' else copy.format}")
    store.write(uri, buf.getvalue(), content_type=f"image/{copy.format}")
    return uri


def _classified(
    job: BatchJob,
    store: ObjectStore,
    todo: Iterator[Item],
    predict: Callable[[np.ndarray], np.ndarray],
    copies: dict[int, str],
    streams: int,
) -> Iterator[Outcome]:
    """(item, probabilities, error) for every item, in input order; copies by item, when asked."""
    assert job.model is not None
    spec = job.model.input
    copy = job.spec.output.copy_images
    copy_prefix = copy.uri.format(date=job.date.isoformat() if job.date else "") if copy else ""
    at_least = max(spec.height, spec.width, copy.max_size if copy else 0)

    def load(item: Item) -> np.ndarray:
        image = decode(_read(item, store, job.fetch_policy), at_least=at_least)
        if copy is not None:
            copies[item.seq] = _write_copy(store, image, copy, copy_prefix, item)
        return prepare(image, spec)

    batch_size = job.model.batching.max_batch_size
    window: deque[tuple[Item, concurrent.futures.Future[np.ndarray]]] = deque()
    # Batches handed to the model threads: one running per stream and one queued, so the model
    # never waits while this thread collects the next batch and the caller writes the rows.
    inflight: deque[tuple[list[Outcome], concurrent.futures.Future[list[np.ndarray]]]] = deque()
    ready: list[Outcome] = []
    decoded = 0
    with (
        concurrent.futures.ThreadPoolExecutor(job.workers, thread_name_prefix="fetch") as pool,
        concurrent.futures.ThreadPoolExecutor(streams, thread_name_prefix="model") as model,
    ):
        exhausted = False
        while True:
            while not exhausted and len(window) < job.workers * 4:  # keep the fetchers busy
                nxt = next(todo, None)
                if nxt is None:
                    exhausted = True
                    break
                window.append((nxt, pool.submit(load, nxt)))
            if not window:
                break
            item, future = window.popleft()
            try:
                ready.append((item, future.result(), None))
                decoded += 1
            except (ImageError, StorageError, FetchError, OSError) as e:
                ready.append((item, None, str(e)))
            if decoded >= batch_size:
                inflight.append((ready, model.submit(_predict, ready, predict, batch_size, spec)))
                ready, decoded = [], 0
                if len(inflight) > streams + 1:
                    yield from _joined(*inflight.popleft())
        if ready:
            inflight.append((ready, model.submit(_predict, ready, predict, batch_size, spec)))
        while inflight:
            yield from _joined(*inflight.popleft())


def _predict(
    ready: list[Outcome], predict: Callable[[np.ndarray], np.ndarray], batch_size: int, spec: Any
) -> list[np.ndarray]:
    """Probabilities for the decoded images among `ready`, in their order.

    Every call is padded to the full batch size, so the model sees one shape and an image scores
    the same bits whichever shard and batch it falls in (a shard's last batch costs a few rows).
    """
    images = [r[1] for r in ready if r[2] is None]
    if not images:
        return []
    tensor = scale_pixels(np.stack(images).astype(np.float32), spec).astype(np.float32)  # type: ignore[arg-type]
    return list(run_padded(predict, tensor, batch_size))


def _joined(
    ready: list[Outcome], probabilities: concurrent.futures.Future[list[np.ndarray]]
) -> Iterator[Outcome]:
    it = iter(probabilities.result())
    for item, _, error in ready:
        yield (item, None, error) if error is not None else (item, next(it), None)
