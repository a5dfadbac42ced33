"""Objects as local files (`file://` URIs): for local stacks, the demo and tests. A write goes to a
hidden temporary file beside the object, made durable, then renamed over it (atomic); a create-only
write hard-links it, which fails when the object exists."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from kubeclassify.core.storage import (
    AlreadyExists,
    Data,
    InvalidUri,
    Location,
    ObjectInfo,
    ObjectNotFound,
    ObjectTooLarge,
    StorageError,
)


class FileObjects:
    def read(self, loc: Location, max_bytes: int | None) -> bytes:
        path = _path(loc)
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise ObjectTooLarge(f"{loc.uri} is {size} bytes; the limit is {max_bytes}")
        return path.read_bytes()

    def open(self, loc: Location) -> IO[bytes]:
        return _path(loc).open("rb")

    def write(self, loc: Location, data: Data, content_type: str) -> None:
        os.replace(_write_temp(loc, data), loc.key)

    def create(self, loc: Location, data: Data, content_type: str) -> None:
        tmp = _write_temp(loc, data)
        try:
            os.link(tmp, loc.key)
        except FileExistsError as e:
            raise AlreadyExists(f"{loc.uri} already exists") from e
        finally:
            os.unlink(tmp)

    def stat(self, loc: Location) -> ObjectInfo:
        try:
            st = _path(loc).stat()
        except FileNotFoundError as e:
            raise ObjectNotFound(f"{loc.uri} does not exist") from e
        return ObjectInfo(loc.uri, st.st_size, dt.datetime.fromtimestamp(st.st_mtime, dt.UTC))

    def delete(self, loc: Location) -> None:
        Path(loc.key).unlink(missing_ok=True)

    def iter_objects(self, loc: Location, page_size: int) -> Iterator[ObjectInfo]:
        # A prefix is a folder ("/data/x/") or a folder plus the start of names ("/data/x/img_").
        prefix = loc.key
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

    def presign(self, loc: Location, expires: int) -> str:
        return loc.uri


FILES = FileObjects()


def _path(loc: Location) -> Path:
    if not os.path.isabs(loc.key):
        raise InvalidUri(f"{loc.uri!r} is not an absolute path")
    path = Path(loc.key)
    if path.is_dir():
        raise StorageError(f"{loc.uri} is a folder, not an object")
    if not path.exists():
        raise ObjectNotFound(f"{loc.uri} does not exist")
    return path


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
