"""The storage layer's contract, on disk and against a real SeaweedFS."""

from __future__ import annotations

import csv
import http.server
import io
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import (
    AccessDenied,
    AlreadyExists,
    BucketNotFound,
    InvalidUri,
    Location,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    StorageError,
    join,
)


@pytest.fixture(params=["file", "s3"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty location of each kind."""
    if request.param == "file":
        return f"file://{tmp_path}/store"
    return f"s3://{request.getfixturevalue('bucket')}/prefix"


def test_write_read_replace_and_delete(store: ObjectStore, base: str) -> None:
    uri = join(base, "a/b.txt")
    assert not store.exists(uri)
    store.write(uri, b"one", content_type="text/plain")
    assert store.read(uri) == b"one"
    store.write(uri, io.BytesIO(b"two"))
    assert store.read(uri) == b"two"
    assert store.stat(uri).size == 3
    store.delete(uri)
    store.delete(uri)  # deleting twice is fine
    assert not store.exists(uri)
    with pytest.raises(ObjectNotFound, match="does not exist"):
        store.read(uri)


def test_create_only_writes_once(store: ObjectStore, base: str) -> None:
    uri = join(base, "_SUCCESS")
    store.create(uri, b'{"rows": 3}')
    with pytest.raises(AlreadyExists):
        store.create(uri, b'{"rows": 4}')
    assert store.read(uri) == b'{"rows": 3}'


def test_racing_create_only_writes_publish_exactly_once(store: ObjectStore, base: str) -> None:
    uri = join(base, "results.csv")
    outcomes: list[str] = []

    def publish(i: int) -> None:
        try:
            store.create(uri, f"writer {i}".encode())
            outcomes.append("created")
        except AlreadyExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created"] + ["exists"] * 7
    assert store.read(uri).startswith(b"writer ")


def test_listing_pages_through_every_object_in_order(store: ObjectStore, base: str) -> None:
    names = [f"images/2026-11-20/{i:03d}.jpg" for i in range(7)] + ["images/2026-11-21/000.jpg", "other.txt"]
    for n in names:
        store.write(join(base, n), b"x")
    listed = [o.uri for o in store.iter_objects(join(base, "images/2026-11-20/"), page_size=3)]
    assert listed == [join(base, n) for n in names[:7]]
    partial = [o.uri for o in store.iter_objects(join(base, "images/2026-11-2"), page_size=2)]
    assert len(partial) == 8
    assert list(store.iter_objects(join(base, "nothing/"))) == []


def test_streaming_text_read(store: ObjectStore, base: str) -> None:
    rows = [{"filepath": f"img/{i}.jpg", "date": "2026-11-20"} for i in range(20000)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["filepath", "date"])
    writer.writeheader()
    writer.writerows(rows)
    uri = join(base, "manifest.csv")
    store.write(uri, ("\ufeff" + buf.getvalue()).encode())  # with a BOM, as spreadsheets write
    with store.open_text(uri) as f:
        read = list(csv.DictReader(f))
    assert read == rows


def test_size_limit_refuses_before_reading(store: ObjectStore, base: str) -> None:
    uri = join(base, "big.bin")
    store.write(uri, b"x" * 1000)
    assert store.read(uri, max_bytes=1000) == b"x" * 1000
    with pytest.raises(ObjectTooLarge, match="1000 bytes; the limit is 999"):
        store.read(uri, max_bytes=999)


def test_presigned_url_reads_without_credentials(store: ObjectStore, base: str) -> None:
    uri = join(base, "shared.txt")
    store.write(uri, b"hello")
    url = store.presign(uri, expires=60)
    if base.startswith("file://"):
        assert url == uri
    else:
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.read() == b"hello"


@pytest.mark.parametrize("uri", ["http://example.com/x", "s3:///key", "gs://bucket/x", "file://host/x"])
def test_invalid_uris_are_refused(store: ObjectStore, uri: str) -> None:
    with pytest.raises(InvalidUri):
        store.read(uri)


def test_location_parsing() -> None:
    assert Location.parse("s3://bucket/a/b.csv") == Location("s3", "bucket", "a/b.csv")
    assert Location.parse("file:///data/a%20b.csv") == Location("file", "", "/data/a b.csv")
    assert join("s3://b/x/", "/y/", "z.csv") == "s3://b/x/y/z.csv"


# --- S3-specific: the errors a person must be able to act on --------------------------------------


def test_missing_bucket_is_named(store: ObjectStore) -> None:
    for action in (
        lambda: store.read("s3://no-such-bucket-here/k"),
        lambda: store.exists("s3://no-such-bucket-here/k"),
        lambda: list(store.iter_objects("s3://no-such-bucket-here/")),
        lambda: store.write("s3://no-such-bucket-here/k", b"x"),
    ):
        with pytest.raises(BucketNotFound, match="bucket 'no-such-bucket-here' does not exist"):
            action()


def test_wrong_credentials_are_refused(s3_settings: S3Settings, bucket: str) -> None:
    wrong = ObjectStore(s3_settings.model_copy(update={"secret_access_key": SecretStr("not-the-secret")}))
    with pytest.raises(AccessDenied, match="check the access key"):
        wrong.read(f"s3://{bucket}/anything")
    with pytest.raises(AccessDenied):
        wrong.write(f"s3://{bucket}/anything", b"x")
    unknown = ObjectStore(s3_settings.model_copy(update={"access_key_id": "nobody"}))
    with pytest.raises(AccessDenied):
        list(unknown.iter_objects(f"s3://{bucket}/"))


class _ThrottlingProxy(http.server.BaseHTTPRequestHandler):
    """Answers the first `failures` requests with 503 SlowDown, then forwards to S3."""

    upstream = ""
    failures = 0
    seen = 0

    def _handle(self) -> None:
        cls = type(self)
        cls.seen += 1
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if cls.seen <= cls.failures:
            payload = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        # The Host header stays the proxy's: the client signed the request for it.
        req = urllib.request.Request(
            cls.upstream + self.path,
            data=body or None,
            method=self.command,
            headers=dict(self.headers.items()),
        )
        try:
            resp = urllib.request.urlopen(req, timeout=10)
        except urllib.error.HTTPError as e:
            resp = e
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def throttled(s3_settings: S3Settings) -> Iterator[tuple[type[_ThrottlingProxy], str]]:
    handler = type("Proxy", (_ThrottlingProxy,), {"upstream": s3_settings.endpoint_url, "seen": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_throttling_is_retried_with_backoff(
    store: ObjectStore, s3_settings: S3Settings, bucket: str, throttled: tuple[type[_ThrottlingProxy], str]
) -> None:
    handler, endpoint = throttled
    store.write(f"s3://{bucket}/k", b"payload")
    handler.failures = 2
    patient = ObjectStore(s3_settings.model_copy(update={"endpoint_url": endpoint, "max_attempts": 4}))
    assert patient.read(f"s3://{bucket}/k") == b"payload"
    assert handler.seen == 3
    handler.seen, handler.failures = 0, 5
    impatient = ObjectStore(s3_settings.model_copy(update={"endpoint_url": endpoint, "max_attempts": 2}))
    with pytest.raises(StorageError, match="SlowDown"):
        impatient.read(f"s3://{bucket}/k")
    assert handler.seen == 2
