"""Settings refuse development secrets outside development; logs are JSON without secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import SecretStr, ValidationError

from kubeclassify.core.logs import JsonFormatter, configure_logging, redact, request_id
from kubeclassify.core.settings import Settings, development_secret


class GatewayLike(Settings):
    """A component's settings with a secret that has a development default."""

    signing_key: SecretStr = development_secret("signing-key")


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECLASSIFY_S3__ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("KUBECLASSIFY_S3__SECRET_ACCESS_KEY", "s3cret")
    monkeypatch.setenv("KUBECLASSIFY_LOG_LEVEL", "DEBUG")
    s = Settings()
    assert s.s3.endpoint_url == "http://127.0.0.1:9000"
    assert s.s3.secret_access_key is not None and s.s3.secret_access_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.log_level == "DEBUG" and s.environment == "production"


def test_development_secret_refused_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as e:
        GatewayLike()
    assert "KUBECLASSIFY_SIGNING_KEY still has its development default" in str(e.value)
    monkeypatch.setenv("KUBECLASSIFY_ENVIRONMENT", "development")
    assert GatewayLike().signing_key.get_secret_value().startswith("insecure-development-")
    monkeypatch.setenv("KUBECLASSIFY_ENVIRONMENT", "production")
    monkeypatch.setenv("KUBECLASSIFY_SIGNING_KEY", "a-real-key-from-a-secret")
    assert GatewayLike().signing_key.get_secret_value() == "a-real-key-from-a-secret"


def test_invalid_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECLASSIFY_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError) as e:
        Settings()
    assert "log_format" in str(e.value)


def test_json_log_line_carries_request_id_and_hides_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("kubeclassify.test")
    logger.handlers[:] = [handler]
    logger.propagate = False
    token = request_id.set("req-42")
    try:
        logger.warning(
            "login for %s",
            "alice",
            extra={
                "password": "hunter2",
                "headers": {"Authorization": "Bearer abc", "Accept": "json"},
                "user": "alice",
            },
        )
    finally:
        request_id.reset(token)
    line = json.loads(stream.getvalue())
    assert line["message"] == "login for alice" and line["level"] == "WARNING"
    assert line["request_id"] == "req-42" and line["user"] == "alice"
    assert line["password"] == "[redacted]"
    assert line["headers"] == {"Authorization": "[redacted]", "Accept": "json"}
    assert "hunter2" not in stream.getvalue() and "Bearer abc" not in stream.getvalue()


def test_exceptions_are_logged_with_their_traceback() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info()
        )
    entry = json.loads(formatter.format(record))
    assert "ValueError: broken" in entry["exception"]


def test_redact_walks_nested_structures() -> None:
    assert redact({"a": [{"api_key": "k"}], "b": ("x",)}) == {"a": [{"api_key": "[redacted]"}], "b": ["x"]}


def test_configure_logging_sets_one_root_handler() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("WARNING", "json")
        assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_development_lets_users_try_the_one_minute_schedule() -> None:
    from pydantic import SecretStr

    from kubeclassify.gateway.config import GatewayConfig, GatewaySettings

    production = GatewayConfig(token_secret=SecretStr("a real secret of enough length for tokens"))
    assert GatewaySettings(environment="production", gateway=production).gateway.min_schedule_interval == 3600
    assert GatewaySettings(environment="development").gateway.min_schedule_interval == 60
    chosen = GatewaySettings(environment="development", gateway=GatewayConfig(min_schedule_interval=600))
    assert chosen.gateway.min_schedule_interval == 600, "a value set stays"
