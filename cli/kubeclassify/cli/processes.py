"""Local processes the stack and the tests start: each in its own session, on free loopback ports,
logging to a file, and stopped by its PID (SIGTERM, then SIGKILL after a grace period). Processes
still running at interpreter exit are stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

_RUNNING: dict[int, LocalProcess] = {}


class LaunchError(RuntimeError):
    """A service did not start; the message carries the end of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct free ports (held open together while choosing, so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(n)]
        for s in socks:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class LocalProcess:
    """A service running as a child process in its own session."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL it."""
        _RUNNING.pop(self.pid, None)
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def detach(self) -> None:
        """Leave the process running when this interpreter exits (`kubeclassify up`)."""
        _RUNNING.pop(self.pid, None)

    def __enter__(self) -> LocalProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_process(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    ready: Callable[[], bool],
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> LocalProcess:
    """Start `argv`, logging to `log_dir/name.log`, and wait until `ready()` is true."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
    proc = LocalProcess(name, list(argv), log_path, popen)
    _RUNNING[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while True:
        if not proc.running():
            proc.stop()
            raise LaunchError(f"{name} exited with code {popen.returncode}:\n{proc.log_tail()}")
        with contextlib.suppress(OSError):
            if ready():
                return proc
        if time.monotonic() > deadline:
            proc.stop()
            raise LaunchError(f"{name} was not ready after {timeout:.0f}s:\n{proc.log_tail()}")
        time.sleep(0.05)


@atexit.register
def _stop_all() -> None:
    for proc in list(_RUNNING.values()):
        proc.stop(grace=2.0)


def find_binary(name: str) -> str:
    """A program from this environment's bin folder (where pip puts it), else from PATH."""
    candidate = Path(sys.prefix) / "bin" / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise LaunchError(f"{name} is not installed: pip install 'kubeclassify[local]'")
    return found


def http_status(url: str, timeout: float = 2.0) -> int:
    """The status a GET of `url` answers, through the platform's one HTTP client; OSError when
    nothing answers (what a readiness check waits through)."""

    async def get() -> int:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url) as resp,
        ):
            return resp.status

    try:
        return asyncio.run(get())
    except (aiohttp.ClientError, TimeoutError) as e:
        raise OSError(f"{url}: {e}") from e
