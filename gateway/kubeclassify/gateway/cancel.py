"""Stopping background tasks, so that a gateway replica's shutdown always ends.

Two ways a cancel goes astray, both met while Redis restarts:

- It reaches redis-py in the middle of a call and comes out as redis-py's own error (a
  ConnectionError, a TimeoutError). A loop that retries on errors would take it for one, log a
  Redis failure and wait to try again: every such loop calls `stop_if_cancelled` first in its
  error handler, so that it stops at once and says nothing.
- It is dropped. redis-py sends each command under `asyncio.wait_for` when a socket timeout is
  set, and on Python 3.11 wait_for returns the reply instead of raising when the reply and the
  cancel come in the same turn of the loop (CPython gh-86296, fixed in 3.12). The task goes on as
  if never asked. `stop_tasks` asks again until each task has ended, as anyio's cancel scopes do:
  it is what guarantees that a stop ends, whatever a library does with a cancel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

ASK_AGAIN_SECONDS = 0.1


def cancelling() -> bool:
    """Whether the running task has been asked to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancelled(error: BaseException) -> None:
    """Stop (CancelledError) if `error` came while the running task was being cancelled."""
    if cancelling():
        raise asyncio.CancelledError from error


async def stop_tasks(tasks: Iterable[asyncio.Task[object] | None]) -> None:
    """Cancel the tasks and return once every one has ended, cancelling again each
    ASK_AGAIN_SECONDS a task goes on. An error a task ended with is logged, not raised: the rest
    of the shutdown goes on."""
    going = {task for task in tasks if task is not None}
    ended: set[asyncio.Task[object]] = set()
    while waiting := going - ended:
        for task in waiting:
            task.cancel()
        done, _ = await asyncio.wait(waiting, timeout=ASK_AGAIN_SECONDS)
        ended |= done
    for task in ended:
        if not task.cancelled() and task.exception() is not None:
            log.error("a background task failed", exc_info=task.exception())
