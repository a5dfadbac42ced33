"""Object storage for `s3://` and `file://` URIs, used by every component.

Writes are atomic (a reader sees the old object or the new one, never half of one); `create` is a
create-only write for publishing results exactly once (S3 `If-None-Match: *`; a hard link on disk).
S3 requests are retried with backoff on throttling and 5xx (botocore's standard mode); errors
come back as the exceptions below with a message that says what to fix.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from kubeclassify.core.settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class StorageError(Exception):
    """A storage operation failed; the message says why."""


class InvalidUri(StorageError, ValueError):
    """Not an s3:// or file:// URI."""


class ObjectNotFound(StorageError):
    """The object does not exist."""


class BucketNotFound(StorageError):
    """The bucket does not exist."""


class AccessDenied(StorageError):
    """The credentials were refused, or are missing."""


class AlreadyExists(StorageError):
    """A create-only write found the object already there."""


class ObjectTooLarge(StorageError):
    """The object is larger than the caller allows."""


@dataclass(frozen=True)
class Location:
    """A parsed URI: scheme, bucket (empty for files) and key (the path for files)."""

    scheme: str
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> Location:
        parts = urlsplit(uri)
        if parts.scheme == "s3":
            if not parts.netloc:
                raise InvalidUri(f"{uri!r} has no bucket: expected s3://bucket/key")
            return cls("s3", parts.netloc, parts.path.lstrip("/"))
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise InvalidUri(f"{uri!r} names a host: expected file:///absolute/path")
            return cls("file", "", unquote(parts.path))
        raise InvalidUri(f"{uri!r} is not a storage URI: expected s3://bucket/key or file:///path")

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.scheme == "s3" else f"file://{self.key}"


def join(base: str, *parts: str) -> str:
    """Append path parts to a URI, with exactly one slash between them."""
    out = base.rstrip("/")
    for p in parts:
        out += "/" + p.strip("/")
    return out


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object."""

    uri: str
    size: int
    modified: dt.datetime
    etag: str | None = None


Data = bytes | IO[bytes]


class ObjectStore:
    """Read, write and list objects by URI; one instance serves both schemes and is thread-safe."""

    def __init__(self, s3: S3Settings | None = None) -> None:
        self._s3_settings = s3 or S3Settings()

    # -- public API ----------------------------------------------------------------------------

    def read(self, uri: str, max_bytes: int | None = None) -> bytes:
        """The whole object; `ObjectTooLarge` (before reading it) when over `max_bytes`."""
        loc = Location.parse(uri)
        if loc.scheme == "file":
            path = self._path(loc)
            if max_bytes is not None and path.stat().st_size > max_bytes:
                raise ObjectTooLarge(f"{uri} is {path.stat().st_size} bytes; the limit is {max_bytes}")
            return path.read_bytes()
        with self._errors(loc):
            return self._get(loc, max_bytes)

    def open(self, uri: str) -> IO[bytes]:
        """A binary stream over the object, read as it is consumed; close it when done."""
        loc = Location.parse(uri)
        if loc.scheme == "file":
            return self._path(loc).open("rb")
        with self._errors(loc):
            body = self._s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        return io.BufferedReader(_RawStream(body), buffer_size=1 << 20)

    def open_text(self, uri: str, encoding: str = "utf-8-sig") -> IO[str]:
        """A text stream over the object (a BOM is dropped), read as it is consumed."""
        return io.TextIOWrapper(self.open(uri), encoding=encoding, newline="")

    def write(self, uri: str, data: Data, content_type: str | None = None) -> None:
        """Write the object atomically, replacing what was there."""
        loc = Location.parse(uri)
        if loc.scheme == "file":
            tmp = self._write_temp(loc, data)
            os.replace(tmp, loc.key)
            return
        content_type = content_type or "application/octet-stream"
        with self._errors(loc):
            if isinstance(data, bytes):
                self._presigned("put_object", loc, data, content_type).release_conn()
            else:  # multipart for large streams; the object appears only when complete
                self._s3.upload_fileobj(data, loc.bucket, loc.key, ExtraArgs={"ContentType": content_type})

    def create(self, uri: str, data: Data, content_type: str | None = None) -> None:
        """Write the object only if it does not exist yet; `AlreadyExists` otherwise."""
        loc = Location.parse(uri)
        if loc.scheme == "file":
            tmp = self._write_temp(loc, data)
            try:
                os.link(tmp, loc.key)
            except FileExistsError as e:
                raise AlreadyExists(f"{uri} already exists") from e
            finally:
                os.unlink(tmp)
            return
        with self._errors(loc):
            self._s3.put_object(
                Bucket=loc.bucket,
                Key=loc.key,
                Body=data,
                IfNoneMatch="*",
                ContentType=content_type or "application/octet-stream",
            )

    def exists(self, uri: str) -> bool:
        """Whether the object exists; a missing bucket is an error, not False."""
        try:
            self.stat(uri)
        except ObjectNotFound:
            return False
        return True

    def stat(self, uri: str) -> ObjectInfo:
        """Size, modification time and ETag of one object."""
        loc = Location.parse(uri)
        if loc.scheme == "file":
            try:
                st = self._path(loc).stat()
            except FileNotFoundError as e:
                raise ObjectNotFound(f"{uri} does not exist") from e
            return ObjectInfo(uri, st.st_size, dt.datetime.fromtimestamp(st.st_mtime, dt.UTC))
        with self._errors(loc):
            head = self._s3.head_object(Bucket=loc.bucket, Key=loc.key)
        return ObjectInfo(uri, head["ContentLength"], head["LastModified"], head.get("ETag"))

    def delete(self, uri: str) -> None:
        """Delete the object; deleting a missing object is not an error."""
        loc = Location.parse(uri)
        if loc.scheme == "file":
            Path(loc.key).unlink(missing_ok=True)
            return
        with self._errors(loc):
            self._s3.delete_object(Bucket=loc.bucket, Key=loc.key)

    def iter_objects(self, prefix: str, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object whose URI starts with `prefix`: in key order, a page at a time, from S3;
        sorted folder by folder from disk."""
        loc = Location.parse(prefix)
        if loc.scheme == "file":
            yield from _walk(loc.key)
            return
        paginator = self._s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=loc.bucket, Prefix=loc.key, PaginationConfig={"PageSize": page_size}
        )
        with self._errors(loc):
            for page in pages:
                for obj in page.get("Contents", []):
                    yield ObjectInfo(
                        f"s3://{loc.bucket}/{obj['Key']}", obj["Size"], obj["LastModified"], obj.get("ETag")
                    )

    def presign(self, uri: str, expires: int = 3600) -> str:
        """A URL that reads the object without credentials until it expires (files: the file URI)."""
        loc = Location.parse(uri)
        if loc.scheme == "file":
            return loc.uri
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": loc.bucket, "Key": loc.key}, ExpiresIn=expires
        )

    def check(self, uri: str) -> None:
        """Raise when the bucket of an s3:// `uri` cannot be reached (for readiness checks)."""
        loc = Location.parse(uri)
        if loc.scheme == "s3":
            with self._errors(Location("s3", loc.bucket, "")):
                self._s3.head_bucket(Bucket=loc.bucket)

    def create_bucket(self, name: str) -> None:
        """Create a bucket if it does not exist (for local stacks and tests)."""
        with self._errors(Location("s3", name, "")):
            try:
                self._s3.head_bucket(Bucket=name)
            except Exception as e:  # a 404 here means: create it
                if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
                self._s3.create_bucket(Bucket=name)

    # -- internals ------------------------------------------------------------------------------

    @functools.cached_property
    def _s3(self) -> S3Client:
        import boto3
        from botocore.config import Config

        cfg = self._s3_settings
        secret = cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None
        return boto3.session.Session().client(
            "s3",
            endpoint_url=cfg.endpoint_url,
            region_name=cfg.region,
            aws_access_key_id=cfg.access_key_id,
            aws_secret_access_key=secret,
            config=Config(
                retries={"total_max_attempts": cfg.max_attempts, "mode": "standard"},
                connect_timeout=cfg.connect_timeout,
                read_timeout=cfg.read_timeout,
                max_pool_connections=cfg.max_pool_connections,
                s3={"addressing_style": "path" if cfg.endpoint_url else "auto"},
                # Only send checksums where S3 requires them: S3-compatible stores differ.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @functools.cached_property
    def _http(self) -> Any:
        import urllib3
        from botocore.httpsession import get_cert_path

        cfg = self._s3_settings
        return urllib3.PoolManager(
            maxsize=cfg.max_pool_connections,
            ca_certs=get_cert_path(True),
            timeout=urllib3.Timeout(connect=cfg.connect_timeout, read=cfg.read_timeout),
            retries=urllib3.Retry(
                total=cfg.max_attempts - 1,
                status_forcelist=(429, 500, 502, 503, 504),
                backoff_factor=0.1,
                backoff_jitter=0.1,
                raise_on_status=False,
            ),
        )

    def _presigned(
        self, operation: str, loc: Location, body: bytes | None = None, content_type: str | None = None
    ) -> Any:
        """Send one S3 call through a presigned URL on a pooled connection: the urllib3 response.

        The same signed request botocore would send, at a third of its CPU per object: for many
        small images (the batch worker's reads, the gateway's uploads) botocore's per-call machinery
        costs more than the rest of the work. Errors become the ClientError botocore would have
        raised, so one mapping (`_S3Errors`) serves both paths.
        """
        from botocore.exceptions import ClientError

        params = {"Bucket": loc.bucket, "Key": loc.key}
        headers = {}
        if content_type is not None:
            params["ContentType"] = headers["Content-Type"] = content_type
        url = self._s3.generate_presigned_url(operation, params, 300)
        method = "PUT" if operation == "put_object" else "GET"
        try:
            resp = self._http.request(method, url, body=body, headers=headers, preload_content=False)
        except Exception as e:  # urllib3's errors after its retries: connection refused, timeouts
            raise StorageError(f"S3 request for {loc.uri} failed: {e}") from e
        if resp.status != 200:
            text = resp.read(64 << 10).decode(errors="replace")
            resp.release_conn()
            code = _xml_field(text, "Code") or str(resp.status)
            response: Any = {
                "Error": {"Code": code, "Message": _xml_field(text, "Message") or text[:200]},
                "ResponseMetadata": {"HTTPStatusCode": resp.status},
            }
            raise ClientError(response, operation)
        return resp

    def _get(self, loc: Location, max_bytes: int | None) -> bytes:
        """GET one whole object (see `_presigned`), refusing more than `max_bytes`."""
        resp = self._presigned("get_object", loc)
        try:
            length = int(resp.headers.get("Content-Length", -1))
            if max_bytes is not None and length > max_bytes:
                raise ObjectTooLarge(f"{loc.uri} is {length} bytes; the limit is {max_bytes}")
            data: bytes = resp.read() if max_bytes is None else resp.read(max_bytes + 1)
            if max_bytes is not None and len(data) > max_bytes:
                raise ObjectTooLarge(f"{loc.uri} is over the limit of {max_bytes} bytes")
            return data
        finally:
            resp.release_conn()

    def _path(self, loc: Location) -> Path:
        if not os.path.isabs(loc.key):
            raise InvalidUri(f"{loc.uri!r} is not an absolute path")
        path = Path(loc.key)
        if path.is_dir():
            raise StorageError(f"{loc.uri} is a folder, not an object")
        if not path.exists():
            raise ObjectNotFound(f"{loc.uri} does not exist")
        return path

    @staticmethod
    def _write_temp(loc: Location, data: Data) -> str:
        path = Path(loc.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = str(path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                shutil.copyfileobj(data, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _errors(self, loc: Location) -> _S3Errors:
        return _S3Errors(self, loc)

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            self._s3.head_bucket(Bucket=bucket)
        except Exception as e:
            if _code(e) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise
        return True


def _xml_field(body: str, name: str) -> str:
    start = body.find(f"<{name}>")
    end = body.find(f"</{name}>", start)
    return body[start + len(name) + 2 : end] if start >= 0 and end > start else ""


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


_DENIED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidToken",
    "ExpiredToken",
}


class _S3Errors:
    """Turns botocore's exceptions into ours, with a message that says what to fix."""

    def __init__(self, store: ObjectStore, loc: Location) -> None:
        self.store, self.loc = store, loc

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, StorageError):
            return
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        uri, bucket = self.loc.uri, self.loc.bucket
        endpoint = self.store._s3_settings.endpoint_url or "AWS S3"
        if isinstance(exc, NoCredentialsError):
            raise AccessDenied(f"no S3 credentials for {uri}: set the access key and secret") from exc
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                raise BucketNotFound(f"bucket {bucket!r} does not exist at {endpoint}") from exc
            if code in ("NoSuchKey", "404", "NotFound"):
                if not self.store._bucket_exists(bucket):
                    raise BucketNotFound(f"bucket {bucket!r} does not exist at {endpoint}") from exc
                raise ObjectNotFound(f"{uri} does not exist") from exc
            if code in _DENIED:
                raise AccessDenied(
                    f"{endpoint} refused access to {uri} ({code}): check the access key, secret and policy"
                ) from exc
            if code in ("PreconditionFailed", "412"):
                raise AlreadyExists(f"{uri} already exists") from exc
            raise StorageError(f"S3 error on {uri}: {code}: {exc}") from exc
        if isinstance(exc, BotoCoreError):
            raise StorageError(f"S3 request for {uri} to {endpoint} failed: {exc}") from exc


class _RawStream(io.RawIOBase):
    """Adapts botocore's StreamingBody to io, so it can be buffered and decoded as text."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._body.read(len(buffer))
        n = len(chunk)
        buffer[:n] = chunk
        return n

    def close(self) -> None:
        self._body.close()
        super().close()


def _walk(prefix: str) -> Iterator[ObjectInfo]:
    # A prefix is a folder ("/data/x/") or a folder plus the start of names ("/data/x/img_").
    base = prefix if prefix.endswith("/") else os.path.dirname(prefix) + "/"
    if not os.path.isdir(base):
        return
    for root, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(files):
            if name.startswith("."):  # our own temporary files, and hidden files
                continue
            path = os.path.join(root, name)
            if not path.startswith(prefix):
                continue
            st = os.stat(path)
            yield ObjectInfo(f"file://{path}", st.st_size, dt.datetime.fromtimestamp(st.st_mtime, dt.UTC))
