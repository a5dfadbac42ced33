"""Objects in S3 or an S3-compatible store (`s3://` URIs), through boto3; small objects are read
and written through presigned URLs on a pooled connection (see `S3Objects._presigned`). Every
botocore error becomes one of storage's, with a message that says what to fix."""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from kubeclassify.core.settings import S3Settings
from kubeclassify.core.storage import (
    AccessDenied,
    AlreadyExists,
    BucketNotFound,
    Data,
    Location,
    ObjectInfo,
    ObjectNotFound,
    ObjectTooLarge,
    StorageError,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = {"NoSuchKey", "404", "NotFound"}
_DENIED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidToken",
    "ExpiredToken",
}


class S3Objects:
    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint_url or "AWS S3"

    def read(self, loc: Location, max_bytes: int | None) -> bytes:
        """GET the whole object through a presigned URL, refusing more than `max_bytes`."""
        with self._errors(loc):
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

    def open(self, loc: Location) -> IO[bytes]:
        with self._errors(loc):
            body = self.client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        return io.BufferedReader(_RawStream(body), buffer_size=1 << 20)

    def write(self, loc: Location, data: Data, content_type: str) -> None:
        with self._errors(loc):
            if isinstance(data, bytes):
                self._presigned("put_object", loc, data, content_type).release_conn()
            else:  # multipart for large streams; the object appears only when complete
                extra = {"ContentType": content_type}
                self.client.upload_fileobj(data, loc.bucket, loc.key, ExtraArgs=extra)

    def create(self, loc: Location, data: Data, content_type: str) -> None:
        with self._errors(loc):
            self.client.put_object(
                Bucket=loc.bucket, Key=loc.key, Body=data, IfNoneMatch="*", ContentType=content_type
            )

    def stat(self, loc: Location) -> ObjectInfo:
        with self._errors(loc):
            head = self.client.head_object(Bucket=loc.bucket, Key=loc.key)
        return ObjectInfo(loc.uri, head["ContentLength"], head["LastModified"], head.get("ETag"))

    def delete(self, loc: Location) -> None:
        with self._errors(loc):
            self.client.delete_object(Bucket=loc.bucket, Key=loc.key)

    def iter_objects(self, loc: Location, page_size: int) -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=loc.bucket, Prefix=loc.key, PaginationConfig={"PageSize": page_size}
        )
        with self._errors(loc):
            for page in pages:
                for obj in page.get("Contents", []):
                    uri = f"s3://{loc.bucket}/{obj['Key']}"
                    yield ObjectInfo(uri, obj["Size"], obj["LastModified"], obj.get("ETag"))

    def presign(self, loc: Location, expires: int) -> str:
        params = {"Bucket": loc.bucket, "Key": loc.key}
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)

    def check(self, bucket: str) -> None:
        with self._errors(Location("s3", bucket, "")):
            self.client.head_bucket(Bucket=bucket)

    def create_bucket(self, bucket: str) -> None:
        with self._errors(Location("s3", bucket, "")):
            if not self._bucket_exists(bucket):
                self.client.create_bucket(Bucket=bucket)

    # -- internals ------------------------------------------------------------------------------

    @functools.cached_property
    def client(self) -> S3Client:
        import boto3
        from botocore.config import Config

        cfg = self.settings
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

        cfg = self.settings
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

        The same signed request botocore would send, at about half its CPU per object (`make
        bench-http`): for many small images (the batch worker's reads, the gateway's uploads)
        botocore's per-call machinery costs more than the rest of the work. An error answer is
        parsed by botocore's own parser into the ClientError botocore would have raised, so one
        mapping (`_errors`) serves both paths."""
        params = {"Bucket": loc.bucket, "Key": loc.key}
        headers = {}
        if content_type is not None:
            params["ContentType"] = headers["Content-Type"] = content_type
        url = self.client.generate_presigned_url(operation, params, 300)
        method = "PUT" if operation == "put_object" else "GET"
        try:
            resp = self._http.request(method, url, body=body, headers=headers, preload_content=False)
        except Exception as e:  # urllib3's errors after its retries: connection refused, timeouts
            raise StorageError(f"S3 request for {loc.uri} failed: {e}") from e
        if resp.status != 200:
            text = resp.read(64 << 10)
            resp.release_conn()
            raise self._client_error(operation, resp.status, dict(resp.headers), text)
        return resp

    def _client_error(self, operation: str, status: int, headers: dict[str, str], body: bytes) -> Exception:
        """The ClientError botocore raises for this answer, parsed by its REST-XML parser."""
        from botocore.exceptions import ClientError
        from botocore.parsers import create_parser

        meta = self.client.meta
        model = meta.service_model.operation_model(meta.method_to_api_mapping[operation])
        answer = {"status_code": status, "headers": headers, "body": body}
        shape: Any = model.output_shape  # an error answer is parsed without it
        parsed: Any = create_parser("rest-xml").parse(answer, shape)
        return ClientError(parsed, model.name)

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception as e:
            if _code(e) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise
        return True

    @contextlib.contextmanager
    def _errors(self, loc: Location) -> Iterator[None]:
        """Turn botocore's exceptions into storage's, with a message that says what to fix."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        uri, bucket = loc.uri, loc.bucket
        try:
            yield
        except NoCredentialsError as e:
            raise AccessDenied(f"no S3 credentials for {uri}: set the access key and secret") from e
        except ClientError as e:
            code = _code(e)
            if code == "NoSuchBucket" or (code in _MISSING and not self._bucket_exists(bucket)):
                raise BucketNotFound(f"bucket {bucket!r} does not exist at {self.endpoint}") from e
            if code in _MISSING:
                raise ObjectNotFound(f"{uri} does not exist") from e
            if code in _DENIED:
                why = f"{self.endpoint} refused access to {uri} ({code})"
                raise AccessDenied(f"{why}: check the access key, secret and policy") from e
            if code in ("PreconditionFailed", "412"):
                raise AlreadyExists(f"{uri} already exists") from e
            raise StorageError(f"S3 error on {uri}: {code}: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"S3 request for {uri} to {self.endpoint} failed: {e}") from e


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


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
