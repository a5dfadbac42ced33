"""Object storage for `s3://` and `file://` URIs, used by every component: one API (`ObjectStore`)
over two kinds of store, S3 (`storage.s3`) and local files (`storage.files`).

Writes are atomic (a reader sees the old object or the new one, never half of one); `create` is a
create-only write for publishing results exactly once (S3 `If-None-Match: *`; a hard link on disk).
S3 requests are retried with backoff on throttling and 5xx (botocore's standard mode); errors
come back as the exceptions below with a message that says what to fix.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from kubeclassify.core.settings import S3Settings

if TYPE_CHECKING:
    from kubeclassify.core.storage.s3 import S3Objects


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


class Objects(Protocol):
    """One kind of store; `ObjectStore` picks it by the URI's scheme."""

    def read(self, loc: Location, max_bytes: int | None) -> bytes: ...
    def open(self, loc: Location) -> IO[bytes]: ...
    def write(self, loc: Location, data: Data, content_type: str) -> None: ...
    def create(self, loc: Location, data: Data, content_type: str) -> None: ...
    def stat(self, loc: Location) -> ObjectInfo: ...
    def delete(self, loc: Location) -> None: ...
    def iter_objects(self, loc: Location, page_size: int) -> Iterator[ObjectInfo]: ...
    def presign(self, loc: Location, expires: int) -> str: ...


class ObjectStore:
    """Read, write and list objects by URI; one instance serves both schemes and is thread-safe."""

    def __init__(self, s3: S3Settings | None = None) -> None:
        self.s3_settings = s3 or S3Settings()

    def read(self, uri: str, max_bytes: int | None = None) -> bytes:
        """The whole object; `ObjectTooLarge` (before reading it) when over `max_bytes`."""
        return self._at(uri).read(Location.parse(uri), max_bytes)

    def open(self, uri: str) -> IO[bytes]:
        """A binary stream over the object, read as it is consumed; close it when done."""
        return self._at(uri).open(Location.parse(uri))

    def open_text(self, uri: str, encoding: str = "utf-8-sig") -> IO[str]:
        """A text stream over the object (a BOM is dropped), read as it is consumed."""
        return io.TextIOWrapper(self.open(uri), encoding=encoding, newline="")

    def write(self, uri: str, data: Data, content_type: str | None = None) -> None:
        """Write the object atomically, replacing what was there."""
        self._at(uri).write(Location.parse(uri), data, content_type or "application/octet-stream")

    def create(self, uri: str, data: Data, content_type: str | None = None) -> None:
        """Write the object only if it does not exist yet; `AlreadyExists` otherwise."""
        self._at(uri).create(Location.parse(uri), data, content_type or "application/octet-stream")

    def exists(self, uri: str) -> bool:
        """Whether the object exists; a missing bucket is an error, not False."""
        try:
            self.stat(uri)
        except ObjectNotFound:
            return False
        return True

    def stat(self, uri: str) -> ObjectInfo:
        """Size, modification time and ETag of one object."""
        return self._at(uri).stat(Location.parse(uri))

    def delete(self, uri: str) -> None:
        """Delete the object; deleting a missing object is not an error."""
        self._at(uri).delete(Location.parse(uri))

    def iter_objects(self, prefix: str, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object whose URI starts with `prefix`: in key order, a page at a time, from S3;
        sorted folder by folder from disk."""
        return self._at(prefix).iter_objects(Location.parse(prefix), page_size)

    def presign(self, uri: str, expires: int = 3600) -> str:
        """A URL that reads the object without credentials until it expires (files: the file URI)."""
        return self._at(uri).presign(Location.parse(uri), expires)

    def check(self, uri: str) -> None:
        """Raise when the bucket of an s3:// `uri` cannot be reached (for readiness checks)."""
        loc = Location.parse(uri)
        if loc.scheme == "s3":
            self.s3.check(loc.bucket)

    def create_bucket(self, name: str) -> None:
        """Create a bucket if it does not exist (for local stacks and tests)."""
        self.s3.create_bucket(name)

    @functools.cached_property
    def s3(self) -> S3Objects:
        """The S3 store, made on first use (boto3 is imported then)."""
        from kubeclassify.core.storage.s3 import S3Objects

        return S3Objects(self.s3_settings)

    def _at(self, uri: str) -> Objects:
        if Location.parse(uri).scheme == "file":
            from kubeclassify.core.storage import files

            return files.FILES
        return self.s3
