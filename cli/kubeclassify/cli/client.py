"""A small client of the gateway's REST API (`/v1`), used by the CLI and the demo.

Signs in with an API key (`X-API-Key`) or a name and password (an access token), and turns every
error answer (`application/problem+json`) into a `GatewayError` that says what the gateway said.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

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
    """The REST API of one gateway, signed in."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.token: str | None = None  # the access token, when signed in with a name and password
        if api_key:
            self.http.headers["X-API-Key"] = api_key
        elif username and password:
            answer = self._call("POST", "/v1/auth/token", data={"username": username, "password": password})
            self.token = answer["access_token"]
            self.http.headers["Authorization"] = f"Bearer {self.token}"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise GatewayError(0, f"cannot reach the gateway at {self.http.base_url}: {e}") from e
        if resp.status_code >= 400:
            try:
                problem = resp.json()
                message = problem.get("detail") or problem.get("title") or resp.text
                for error in problem.get("errors") or []:
                    message += f"; {error.get('field')}: {error.get('message')}"
            except ValueError:
                message = resp.text or resp.reason_phrase
            raise GatewayError(resp.status_code, message)
        return resp

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._send(method, path, **kwargs)
        return resp.json() if resp.content else None

    # -- the API -------------------------------------------------------------------------------

    def credits(self) -> dict[str, Any]:
        return self._call("GET", "/v1/credits")

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models")

    def images(self, category: str | None = None, limit: int = 50) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, **({"category": category} if category else {})}
        return self._call("GET", "/v1/images", params=params)

    def classify(self, image: str, model: str | None = None) -> dict[str, Any]:
        """Classify a file (uploaded) or an http(s) URL (fetched by the gateway)."""
        form = {"model": model} if model else {}
        if image.startswith(("http://", "https://")):
            return self._call("POST", "/v1/classify", data={**form, "url": image})
        path = Path(image)
        with path.open("rb") as f:
            return self._call("POST", "/v1/classify", data=form, files={"file": (path.name, f)})

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
            files = {"file": (csv_file.name, f, "text/csv")}
            return self._call("POST", "/v1/batches", data=form, files=files)

    def batch(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/batches/{name}")

    def wait_for_batch(
        self, name: str, every: float = 1.0, on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Poll the batch until it has finished; `on_progress` sees each state."""
        return until_finished(lambda: self.batch(name), every, on_progress)

    def results_csv(self, name: str) -> Iterator[bytes]:
        """The batch's results as CSV, streamed."""
        with self.http.stream("GET", f"/v1/batches/{name}/results.csv") as resp:
            if resp.status_code >= 400:
                resp.read()
                self._send("GET", f"/v1/batches/{name}/results.csv")  # raises with the gateway's message
            yield from resp.iter_bytes()

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
