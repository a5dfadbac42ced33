"""The launchers start real services on free ports and stop them by PID."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import redis

from kubeclassify.cli.processes import LaunchError, port_open, start_process
from kubeclassify.cli.services import RedisServer


def test_redis_requires_its_password(redis_server: RedisServer) -> None:
    assert redis.Redis.from_url(redis_server.url).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=redis_server.host, port=redis_server.port, password="wrong").ping()
    with pytest.raises((redis.AuthenticationError, redis.ResponseError), match="NOAUTH|authenticated"):
        redis.Redis(host=redis_server.host, port=redis_server.port).set("k", "v")


def test_a_process_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('cannot bind'); sys.exit(3)"]
    with pytest.raises(LaunchError, match="(?s)exited with code 3.*cannot bind"):
        start_process("broken", argv, tmp_path, ready=lambda: False, timeout=10)


def test_a_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    code = (
        "import signal, socket, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "open('port', 'w').write(str(s.getsockname()[1]))\n"
        "time.sleep(600)\n"
    )
    proc = start_process(
        "stubborn",
        [sys.executable, "-c", code],
        tmp_path,
        ready=lambda: (tmp_path / "port").exists(),
        cwd=tmp_path,
    )
    port = int((tmp_path / "port").read_text())
    assert port_open("127.0.0.1", port)
    proc.stop(grace=0.5)
    assert not proc.running()
    assert proc.popen.returncode == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    assert not port_open("127.0.0.1", port)


def test_seaweedfs_refuses_unknown_keys_and_stops(tmp_path: Path) -> None:
    from kubeclassify.cli.services import start_seaweedfs
    from kubeclassify.core.settings import S3Settings
    from kubeclassify.core.storage import AccessDenied, ObjectStore

    server = start_seaweedfs(tmp_path / "data", tmp_path / "logs")
    try:
        good = ObjectStore(server.settings())  # type: ignore[arg-type]
        good.create_bucket("launcher-check")
        good.write("s3://launcher-check/k", b"v")
        bad = ObjectStore(
            S3Settings(endpoint_url=server.endpoint_url, access_key_id="anyone", secret_access_key="anything")
        )  # type: ignore[arg-type]
        with pytest.raises(AccessDenied):
            bad.read("s3://launcher-check/k")
    finally:
        server.stop()
    assert not server.process.running()
    port = int(server.endpoint_url.rsplit(":", 1)[1])
    assert not port_open("127.0.0.1", port)


def test_seaweedfs_takes_writes_into_more_buckets_than_it_has_gib_of_free_disk(tmp_path: Path) -> None:
    """Each bucket holds a volume of its own, and weed mini's default limit is one volume per GiB
    free: with 76 GiB free, a write into the 77th bucket failed with InternalError (the test suite
    makes a bucket per test, so a runner with less disk failed the last tests of a run)."""
    from kubeclassify.cli.services import start_seaweedfs
    from kubeclassify.core.storage import ObjectStore

    server = start_seaweedfs(tmp_path / "data", tmp_path / "logs")
    try:
        store = ObjectStore(server.settings().model_copy(update={"max_attempts": 1}))
        for i in range(120):
            store.create_bucket(f"many-{i}")
            store.write(f"s3://many-{i}/k", b"v")
        assert [store.read(f"s3://many-{i}/k") for i in (0, 119)] == [b"v", b"v"]
    finally:
        server.stop()
