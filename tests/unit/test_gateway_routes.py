"""The gateway's routes refuse what they must with no server behind them: every dependency (the
caller, the records on Redis, storage, the model catalog, the backends) is overridden with a small
stand-in, so each refusal is decided by the route's own code. The integration tier runs the same
routes against real Redis, SeaweedFS and a predictor."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from harness.standins import Catalog, Records, Untouched
from pydantic import SecretStr

from kubeclassify.core.resources import BatchCounts
from kubeclassify.gateway import deps
from kubeclassify.gateway.accounts import User
from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.batches import BatchRecord
from kubeclassify.gateway.config import GatewayConfig, GatewaySettings
from kubeclassify.gateway.images import ImageRecord
from kubeclassify.gateway.schedules import NothingDue, OutOfCredits, RunInProgress, ScheduleRecord

pytestmark = pytest.mark.unit

ALICE = User(username="alice", role="user", created="2026-12-01T00:00:00Z", credits=10)
ADMIN = dataclasses.replace(ALICE, username="root", role="admin")


def image(owner: str) -> ImageRecord:
    return ImageRecord(
        uid="0123abcd", owner=owner, label="7", score=0.9, top_k=[{"label": "7", "score": 0.9}],
        model_name="digits", model_version="v1", time=0.0, uri="s3://b/img.png", filename="a.png",
        content_type="image/png",
    )  # fmt: skip


def batch(owner: str, state: str = "Running") -> BatchRecord:
    return BatchRecord(
        name=f"{owner}-0001", owner=owner, model="digits", column="url", input_uri="s3://b/in.csv",
        output_uri="s3://b/out.csv", counts=BatchCounts(total=2), reserved=2, state=state,
    )  # fmt: skip


def schedule(owner: str) -> ScheduleRecord:
    return ScheduleRecord(
        name=f"{owner}-daily", owner=owner, model="digits", cron="0 2 * * *", time_zone="UTC"
    )


@pytest.fixture
def app() -> Iterator[Any]:
    config = GatewayConfig(token_secret=SecretStr("x" * 32), redis_url=SecretStr("redis://127.0.0.1:1/0"))
    made = create_app(GatewaySettings(gateway=config))
    made.dependency_overrides.update(
        {
            deps.current_user: lambda: ALICE,
            deps.get_catalog: lambda: Catalog({"digits": "http://predictor", "letters": None}),
            deps.get_images: lambda: Records(image("bob")),
            deps.get_batches: lambda: Records(batch("bob"), batch("alice")),
            deps.get_schedules: lambda: Records(schedule("bob")),
            deps.get_store: lambda: None,
            deps.get_accounts: Untouched,
            deps.get_ledger: Untouched,
            deps.get_batch_backend: Untouched,
            deps.get_http: Untouched,
            deps.get_fetches: Untouched,
            deps.get_schedule_backend: lambda: None,
        }
    )
    yield made


@pytest.fixture
def client(app: Any) -> TestClient:
    return TestClient(app)  # not entered: no lifespan, so nothing connects anywhere


@pytest.mark.parametrize(
    "path",
    ["/v1/images/0123abcd", "/v1/images/0123abcd/content", "/v1/batches/bob-0001", "/v1/schedules/bob-daily"],
)
def test_another_users_record_is_not_there(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404, answer.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("DELETE", "/v1/images/0123abcd", None),
        ("GET", "/v1/batches/bob-0001/results", None),
        ("GET", "/v1/batches/bob-0001/results.csv", None),
        ("DELETE", "/v1/schedules/bob-daily", None),
        ("POST", "/v1/schedules/bob-daily/pause", None),
        ("POST", "/v1/schedules/bob-daily/resume", None),
        ("POST", "/v1/schedules/bob-daily/run", {"date": "2026-12-01"}),
        ("GET", "/v1/schedules/bob-daily/results.csv", None),
        ("PATCH", "/v1/schedules/bob-daily", {"cron": "0 3 * * *"}),
        ("POST", "/v1/schedules/bob-daily/fire", None),
        ("POST", "/v1/batches/bob-0001/cancel", None),
        ("DELETE", "/v1/batches/bob-0001", None),
    ],
)
def test_another_users_record_cannot_be_changed_or_read_either(
    client: TestClient, method: str, path: str, body: Any
) -> None:
    answer = client.request(method, path, json=body)
    assert answer.status_code == 404, answer.text


class Refusing:
    """A schedule backend whose run of a date is refused with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def run(self, schedule: Any, date: Any) -> str | None:
        raise self.error

    async def fire_now(self, schedule: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "says"),
    [
        (OutOfCredits("alice has 0 credits; the date's 3 images cost 3"), 402, "0 credits"),
        (RunInProgress("a run is under way"), 409, "never overlap"),
    ],
)
def test_a_schedules_run_refused_by_its_backend(
    app: Any, client: TestClient, error: Exception, status: int, says: str
) -> None:
    app.dependency_overrides[deps.get_schedules] = lambda: Records(schedule("alice"))
    app.dependency_overrides[deps.get_schedule_backend] = lambda: Refusing(error)
    answer = client.post("/v1/schedules/alice-daily/run", json={"date": "2026-12-01"})
    assert answer.status_code == status and says in answer.text, answer.text


def test_an_admin_sees_anyones_record(app: Any, client: TestClient) -> None:
    app.dependency_overrides[deps.current_user] = lambda: ADMIN
    assert client.get("/v1/batches/bob-0001").json()["owner"] == "bob"
    assert client.get("/v1/images/0123abcd").json()["owner"] == "bob"


def test_a_uid_longer_than_any_is_not_looked_up(client: TestClient) -> None:
    assert client.get("/v1/images/" + "a" * 65).status_code == 404


def test_results_wait_for_the_batch_to_end(client: TestClient) -> None:
    for path in ("/v1/batches/alice-0001/results", "/v1/batches/alice-0001/results.csv"):
        answer = client.get(path)
        assert answer.status_code == 409 and "results come when it ends" in answer.text


@pytest.mark.parametrize(
    ("form", "files", "status", "says"),
    [
        ({}, None, 422, "exactly one of file and url"),
        ({"url": "http://example.com/a.png"}, {"file": ("a.png", b"x")}, 422, "exactly one of file and url"),
        ({"url": "http://example.com/a.png", "model": "nope"}, None, 404, "no model 'nope'"),
        ({"url": "http://example.com/a.png", "model": "letters"}, None, 503, "not ready"),
    ],
)
def test_classify_refuses_before_it_charges(
    client: TestClient, form: dict[str, str], files: Any, status: int, says: str
) -> None:
    answer = client.post("/v1/classify", data={"model": "digits", **form}, files=files)
    assert answer.status_code == status and says in answer.text, answer.text


def test_classify_without_a_default_model_needs_one(client: TestClient) -> None:
    answer = client.post("/v1/classify", data={"url": "http://example.com/a.png"})
    assert answer.status_code == 404 and "no model named and no default model" in answer.text


@pytest.mark.parametrize(
    ("form", "files", "status", "says"),
    [
        ({"model": "digits"}, None, 422, "exactly one of file and date"),
        ({"model": "digits", "date": "2026-12-01"}, {"file": ("a.csv", b"url\n")}, 422, "exactly one"),
        ({"model": "nope", "date": "2026-12-01"}, None, 404, "no model 'nope'"),
        ({"model": "digits", "date": "2026-12-01"}, None, 409, "no manifest is configured here"),
    ],
)
def test_a_batch_is_refused_before_anything_is_stored_or_paid(
    client: TestClient, form: dict[str, str], files: Any, status: int, says: str
) -> None:
    answer = client.post("/v1/batches", data=form, files=files)
    assert answer.status_code == status and says in answer.text, answer.text


def test_no_manifest_means_nothing_to_schedule(app: Any, client: TestClient) -> None:
    del app.dependency_overrides[deps.get_schedule_backend]  # the real one: it checks the manifest
    body = {"cron": "0 2 * * *", "time_zone": "UTC", "model": "digits"}
    answer = client.post("/v1/schedules", json=body)
    assert answer.status_code == 409 and "nothing to schedule" in answer.text


def test_a_caller_without_credentials_is_refused_everywhere(app: Any, client: TestClient) -> None:
    del app.dependency_overrides[deps.current_user]
    app.dependency_overrides[deps.optional_user] = lambda: None
    for method, path in [
        ("GET", "/v1/images"),
        ("GET", "/v1/batches"),
        ("POST", "/v1/classify"),
        ("GET", "/v1/models"),
    ]:
        assert client.request(method, path).status_code == 401, path


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/admin/accounts", None),
        ("PATCH", "/v1/admin/accounts/bob", {"disabled": True}),
        ("GET", "/v1/admin/accounts/bob/audit", None),
        ("POST", "/v1/admin/credits/bob", {"amount": 5}),
        ("GET", "/v1/admin/credits", None),
    ],
)
def test_admin_routes_refuse_a_user(client: TestClient, method: str, path: str, body: Any) -> None:
    answer = client.request(method, path, json=body)
    assert answer.status_code == 403 and "this needs an admin" in answer.text, answer.text


@pytest.mark.parametrize(
    ("csv", "form", "status", "says"),
    [
        (b"name\nx.png\n", {}, 422, "url"),  # no url or path column
        (b"url\n=HYPERLINK(1)\n", {}, 422, "formula"),
        (b"url\n", {}, 422, "no rows"),
        (b"url\nhttp://example.com/a.png\n", {"webhook_url": "http://127.0.0.1/hook"}, 422, "webhook_url"),
    ],
)
def test_a_batch_csv_is_refused_before_it_is_stored(
    client: TestClient, csv: bytes, form: dict[str, str], status: int, says: str
) -> None:
    answer = client.post("/v1/batches", data={"model": "digits", **form}, files={"file": ("b.csv", csv)})
    assert answer.status_code == status and says in answer.text, answer.text


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("61 * * * *", "61"),
        ("0 2 * * 7#1", "cannot hold"),
        ("*/5 * * * *", "schedules may fire at most every"),
    ],
)
def test_a_schedule_is_refused_for_its_cron(client: TestClient, cron: str, says: str) -> None:
    answer = client.post("/v1/schedules", json={"cron": cron, "time_zone": "UTC", "model": "digits"})
    assert answer.status_code == 422 and says in answer.text, answer.text


class Ending:
    """A batch backend whose batch ends (as `state`) when asked to cancel it, as a race would have it."""

    def __init__(self, records: Records, state: str) -> None:
        self.records, self.state = records, state

    async def cancel(self, name: str) -> None:
        self.records.records[name].state = self.state


def test_a_running_batch_is_not_deleted_and_one_that_ended_first_is_not_cancelled(
    app: Any, client: TestClient
) -> None:
    records = Records(batch("alice"))
    app.dependency_overrides[deps.get_batches] = lambda: records
    refused = client.delete("/v1/batches/alice-0001")
    assert refused.status_code == 409 and "cancel it first" in refused.text
    app.dependency_overrides[deps.get_batch_backend] = lambda: Ending(records, "Succeeded")
    late = client.post("/v1/batches/alice-0001/cancel")
    assert late.status_code == 409 and "has ended (Succeeded)" in late.text


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"cron": "* * * * *"}, 422, "at most every"),
        ({"cron": "61 * * * *"}, 422, "cron"),
        ({"time_zone": "Mars/Olympus"}, 422, "time zone"),
        ({"model": "nope"}, 404, "no model 'nope'"),
        ({"webhook_url": "http://10.0.0.1/hook"}, 422, "not a public address"),
    ],
)
def test_a_schedule_edit_is_checked_as_a_new_schedule_is(
    app: Any, client: TestClient, body: dict[str, Any], status: int, says: str
) -> None:
    app.dependency_overrides[deps.get_schedules] = lambda: Records(schedule("alice"))
    answer = client.patch("/v1/schedules/alice-daily", json=body)
    assert answer.status_code == status and says in answer.text, answer.text


@pytest.mark.parametrize(
    ("error", "status", "says"),
    [
        (OutOfCredits("alice has 0 credits; the date's 3 images cost 3"), 402, "0 credits"),
        (RunInProgress("a run is under way"), 409, "never overlap"),
        (NothingDue("every day up to yesterday in UTC is done"), 409, "nothing is due"),
    ],
)
def test_a_schedule_fired_by_hand_is_refused_as_its_backend_says(
    app: Any, client: TestClient, error: Exception, status: int, says: str
) -> None:
    app.dependency_overrides[deps.get_schedules] = lambda: Records(schedule("alice"))
    app.dependency_overrides[deps.get_schedule_backend] = lambda: Refusing(error)
    answer = client.post("/v1/schedules/alice-daily/fire")
    assert answer.status_code == status and says in answer.text, answer.text


def test_a_paused_schedule_is_not_fired(app: Any, client: TestClient) -> None:
    paused = dataclasses.replace(schedule("alice"), paused=True, reason="paused by its owner")
    app.dependency_overrides[deps.get_schedules] = lambda: Records(paused)
    answer = client.post("/v1/schedules/alice-daily/fire")
    assert answer.status_code == 409 and "resume it first" in answer.text
