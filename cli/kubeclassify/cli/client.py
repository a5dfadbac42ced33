"""A small client of the gateway's REST API (`/v1`), used by the CLI and the demo.

Signs in with an API key (`X-API-Key`) or a name and password (an access token), and turns every
error answer (`application/problem+json`) into a `GatewayError` that says what the gateway said.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import aiohttp

from kubeclassify.core.resources.classification_batch import ENDED_PHASES


def until_finished(
    read: Callable[[], dict[str, Any]], every: float, on_progress: Callable[[dict[str, Any]], None] | None
) -> dict[str, Any]:
    """Read a batch's state (a dict with `state`) every `every` seconds until it has finished."""
    while True:
        info = read()
        if on_progress is not None:
            on_progress(info)
        if info["state"] in ENDED_PHASES:
            return info
        time.sleep(every)


class GatewayError(RuntimeError):
    """The gateway refused (4xx), failed (5xx) or could not be reached (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status


class Gateway:
    """The REST API of one gateway, signed in. The calls block; underneath is the one HTTP client
    the platform's own calls use (aiohttp), on an event loop of the client's own."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.headers: dict[str, str] = {}
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.loop = asyncio.new_event_loop()
        self.http = self.loop.run_until_complete(self._open())
        self.token: str | None = None  # the access token, when signed in with a name and password
        if api_key:
            self.headers["X-API-Key"] = api_key
        elif username and password:
            try:
                answer = self._call(
                    "POST", "/v1/auth/token", data={"username": username, "password": password}
                )
            except BaseException:
                self.close()  # no one holds the client yet to close it
                raise
            self.token = answer["access_token"]
            self.headers["Authorization"] = f"Bearer {self.token}"

    async def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=self.timeout)

    def close(self) -> None:
        self.loop.run_until_complete(self.http.close())
        self.loop.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_response(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        """The answer's status and headers (its body still to read); an error answer raised."""
        try:
            resp = self.loop.run_until_complete(
                self.http.request(method, self.url + path, headers=self.headers, **kwargs)
            )
            if resp.status >= 400:
                body = self.loop.run_until_complete(resp.read())
                resp.release()
                raise GatewayError(resp.status, _problem(body, resp.reason))
        except (aiohttp.ClientError, TimeoutError) as e:
            raise GatewayError(0, f"cannot reach the gateway at {self.url}: {e}") from e
        return resp

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._open_response(method, path, **kwargs)
        try:
            body = self.loop.run_until_complete(resp.read())
        except (aiohttp.ClientError, TimeoutError) as e:
            raise GatewayError(0, f"the gateway at {self.url} stopped answering: {e}") from e
        finally:
            resp.release()
        return json.loads(body) if body else None

    # -- the API -------------------------------------------------------------------------------

    def credits(self) -> dict[str, Any]:
        return self._call("GET", "/v1/credits")

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models")

    def images(self, category: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {
            "limit": limit,
            "offset": offset,
            **({"category": category} if category else {}),
        }
        return self._call("GET", "/v1/images", params=params)

    def image_content(self, uid: str) -> Iterator[bytes]:
        """The image as it was uploaded or fetched, streamed."""
        return self._stream(f"/v1/images/{uid}/content")

    def delete_image(self, uid: str) -> None:
        self._call("DELETE", f"/v1/images/{uid}")

    def categories(self) -> dict[str, int]:
        return self._call("GET", "/v1/categories")

    def keys(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/keys")

    def create_key(self, name: str) -> dict[str, Any]:
        """A new API key; the answer is the only place the key itself is shown."""
        return self._call("POST", "/v1/keys", json={"name": name})

    def revoke_key(self, key_id: str) -> None:
        self._call("DELETE", f"/v1/keys/{key_id}")

    def balances(self) -> list[dict[str, Any]]:
        """Every account's credits (an admin's call)."""
        return self._call("GET", "/v1/admin/credits")

    def refill(self, username: str, amount: int | None = None) -> dict[str, Any]:
        """Add `amount` credits (the gateway's refill amount when None) to an account (an admin's call)."""
        return self._call("POST", f"/v1/admin/credits/{username}", json={"amount": amount})

    def classify(self, image: str, model: str | None = None) -> dict[str, Any]:
        """Classify a file (uploaded) or an http(s) URL (fetched by the gateway)."""
        form = {"model": model} if model else {}
        if image.startswith(("http://", "https://")):
            return self._call("POST", "/v1/classify", data={**form, "url": image})
        path = Path(image)
        with path.open("rb") as f:
            return self._call("POST", "/v1/classify", data=_form(form, path.name, f))

    def submit_batch(
        self,
        csv_file: Path | None = None,
        date: str | None = None,
        model: str | None = None,
        max_failed_fraction: float | None = None,
    ) -> dict[str, Any]:
        """Start a batch from a CSV (a url or path column) or from one date of the daily manifest."""
        fields = (("model", model), ("date", date), ("max_failed_fraction", max_failed_fraction))
        form = {k: str(v) for k, v in fields if v is not None}
        if csv_file is None:
            return self._call("POST", "/v1/batches", data=form)
        with csv_file.open("rb") as f:
            return self._call("POST", "/v1/batches", data=_form(form, csv_file.name, f, "text/csv"))

    def batch(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/batches/{name}")

    def batches(self, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """A page of my batches, newest first."""
        return self._call("GET", "/v1/batches", params={"offset": offset, "limit": limit})

    def cancel_batch(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/batches/{name}/cancel")

    def delete_batch(self, name: str) -> None:
        self._call("DELETE", f"/v1/batches/{name}")

    def wait_for_batch(
        self, name: str, every: float = 1.0, on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Poll the batch until it has finished; `on_progress` sees each state."""
        return until_finished(lambda: self.batch(name), every, on_progress)

    def results_csv(self, name: str, label: str | None = None) -> Iterator[bytes]:
        """The batch's results as CSV, streamed; with `label`, only the rows with that top label."""
        return self._stream(f"/v1/batches/{name}/results.csv", {"label": label} if label else None)

    def schedule_results_csv(self, name: str) -> Iterator[bytes]:
        """Every finished run of the schedule as one CSV, oldest date first, streamed."""
        return self._stream(f"/v1/schedules/{name}/results.csv")

    def schedules(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/schedules")

    def schedule(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/schedules/{name}")

    def create_schedule(self, **fields: Any) -> dict[str, Any]:
        """A daily schedule over the gateway's manifest (cron, time_zone, start_date, catch_up, model)."""
        return self._call("POST", "/v1/schedules", json={k: v for k, v in fields.items() if v is not None})

    def edit_schedule(self, name: str, **fields: Any) -> dict[str, Any]:
        """Change a schedule: the fields given (cron, time_zone, catch_up, model, webhook_url)."""
        changes = {k: v for k, v in fields.items() if v is not None}
        return self._call("PATCH", f"/v1/schedules/{name}", json=changes)

    def delete_schedule(self, name: str) -> None:
        self._call("DELETE", f"/v1/schedules/{name}")

    def pause_schedule(self, name: str, paused: bool) -> dict[str, Any]:
        return self._call("POST", f"/v1/schedules/{name}/{'pause' if paused else 'resume'}")

    def fire_schedule(self, name: str) -> dict[str, Any]:
        """Fire the schedule now, as its cron would: the date it took and the batch that runs it."""
        return self._call("POST", f"/v1/schedules/{name}/fire")

    def run_schedule(self, name: str, date: str) -> dict[str, Any]:
        """Run one date of the schedule now: the schedule, the date and the batch that runs it."""
        return self._call("POST", f"/v1/schedules/{name}/run", json={"date": date})

    def _stream(self, path: str, params: dict[str, str] | None = None) -> Iterator[bytes]:
        resp = self._open_response("GET", path, params=params)
        try:
            while chunk := self.loop.run_until_complete(resp.content.readany()):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as e:
            raise GatewayError(0, f"the gateway at {self.url} stopped answering: {e}") from e
        finally:
            resp.release()

    def results(self, name: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Every result row (paged through), typed as the gateway gives them."""
        rows: list[dict[str, Any]] = []
        while True:
            page = self._call(
                "GET", f"/v1/batches/{name}/results", params={"offset": len(rows), "limit": limit}
            )
            rows.extend(page["rows"])
            if not page["more"]:
                return rows


def _form(
    fields: dict[str, str], filename: str, file: IO[bytes], content_type: str | None = None
) -> aiohttp.FormData:
    """A multipart form: the fields and one file."""
    form = aiohttp.FormData(fields)
    form.add_field("file", file, filename=filename, content_type=content_type)
    return form


def _problem(body: bytes, reason: str | None) -> str:
    """What an error answer (`application/problem+json`) says, with each field's error."""
    try:
        problem = json.loads(body)
        message = str(problem.get("detail") or problem.get("title") or body.decode(errors="replace"))
        for error in problem.get("errors") or []:
            message += f"; {error.get('field')}: {error.get('message')}"
    except (ValueError, AttributeError):
        message = body.decode(errors="replace") or reason or ""
    return message
