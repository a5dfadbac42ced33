"""A background task asked to stop, told apart from a failure.

A cancel that reaches redis-py in the middle of a call can come out as redis-py's own error (a
ConnectionError, a TimeoutError), most often while Redis restarts. A loop that retries on errors
would take it for one and go on for ever, and the gateway would never finish shutting down: every
such loop calls `stop_if_cancelled` first in its error handler.
"""

from __future__ import annotations

import asyncio


def cancelling() -> bool:
    """Whether the running task has been asked to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancelled(error: BaseException) -> None:
    """Stop (CancelledError) if `error` came while the running task was being cancelled."""
    if cancelling():
        raise asyncio.CancelledError from error
