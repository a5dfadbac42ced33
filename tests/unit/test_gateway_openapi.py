"""The gateway's OpenAPI schema tells a client what it needs: what each operation does, each error
status it answers with (as a problem document, with what it means), and times in one format."""

from __future__ import annotations

from typing import Any

import pytest

from kubeclassify.gateway.app import create_app
from kubeclassify.gateway.config import GatewaySettings
from kubeclassify.gateway.errors import MEANINGS


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app(GatewaySettings(environment="development")).openapi()  # type: ignore[no-any-return]


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), path, op) for path, item in schema["paths"].items() for m, op in item.items()]


def test_every_operation_says_what_it_does(schema: dict[str, Any]) -> None:
    assert schema["info"]["description"]
    missing = [f"{m} {p}" for m, p, op in operations(schema) if len(op.get("description", "")) < 20]
    assert missing == []


def test_every_error_is_a_documented_status_with_a_problem_document(schema: dict[str, Any]) -> None:
    for method, path, op in operations(schema):
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        assert "4XX" not in errors, f"{method} {path}: a status range says nothing"
        if path.startswith("/v1/") and path not in ("/v1/accounts", "/v1/auth/token"):
            assert {"401", "422", "429", "503"} <= set(errors), f"{method} {path}"
        for code, response in errors.items():
            if path == "/readyz":
                continue  # its 503 is a Readiness body: which dependency does not answer
            assert response["description"] == MEANINGS[int(code)], (method, path, code)
            assert "application/problem+json" in response["content"], (method, path, code)
        if "429" in errors:
            assert "Retry-After" in errors["429"]["headers"]
    expected = {
        ("POST", "/v1/classify"): {"400", "402", "404", "413", "415"},
        ("POST", "/v1/batches"): {"402", "404", "409", "413"},
        ("GET", "/v1/batches/{name}/results"): {"404", "409"},
        ("GET", "/v1/batches/{name}/results.csv"): {"404", "409"},
        ("GET", "/v1/schedules/{name}/results.csv"): {"404"},
        ("POST", "/v1/accounts"): {"409", "422"},
        ("POST", "/v1/auth/token"): {"401", "429"},
        ("POST", "/v1/admin/credits/{username}"): {"403", "404"},
    }
    for (method, path), codes in expected.items():
        assert codes <= set(schema["paths"][path][method.lower()]["responses"]), (method, path)


def test_times_are_rfc3339_and_results_are_typed(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    for model, field in [
        ("Account", "created"),
        ("KeyInfo", "created"),
        ("ImageInfo", "time"),
        ("BatchInfo", "created"),
        ("ScheduleInfo", "created"),
    ]:
        assert components[model]["properties"][field]["format"] == "date-time", (model, field)
    row = components["ResultRow"]["properties"]
    assert row["id"]["type"] == "integer" and row["top_k"]["type"] == "array"
    assert {"type": "number"} in row["score"]["anyOf"]
