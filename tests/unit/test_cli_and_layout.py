"""The `kubeclassify` command and the layout of the namespace package."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kubeclassify.core import cli

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = ROOT, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a process; `home` is its KUBECLASSIFY_HOME (a local stack it may find there)."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECLASSIFY_HOME"}
    if home is not None:
        env["KUBECLASSIFY_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "kubeclassify.core.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env=env,
    )


def test_help_lists_component_commands() -> None:
    done = run("--help")
    assert done.returncode == 0
    for command in ("batch", "crds", "serve", "train"):
        assert command in done.stdout


def test_serve_passes_its_arguments_to_the_predictor() -> None:
    done = run("serve", "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: kubeclassify serve")
    assert "--spec" in done.stdout and "--http_port" in done.stdout


def test_crds_check_passes_on_the_repository() -> None:
    done = run("crds", "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_crds_check_fails_on_drift(tmp_path: Path) -> None:
    assert cli.main(["crds", "--output", str(tmp_path)]) == 0
    (tmp_path / "classificationbatches.yaml").write_text("# edited by hand\n")
    done = run("crds", "--check", "--output", str(tmp_path))
    assert done.returncode == 1
    assert "kubeclassify crds" in done.stderr


def test_no_command_prints_help_and_fails() -> None:
    done = run()
    assert done.returncode == 2 and "commands" in done.stdout


def test_standard_operator_module_is_not_shadowed() -> None:
    """The operator/ folder holds the namespace portion kubeclassify.operator, never `operator`."""
    assert not (ROOT / "operator" / "__init__.py").exists()
    done = subprocess.run(
        [sys.executable, "-c", "import operator, sys; print(operator.__file__)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 0 and done.stdout.strip().startswith(sys.base_prefix)


def test_components_share_one_namespace() -> None:
    import kubeclassify.core
    import kubeclassify.gateway
    import kubeclassify.inference
    import kubeclassify.operator

    folders = {
        Path(m.__file__).parents[2].name
        for m in (  # type: ignore[arg-type]
            kubeclassify.core,
            kubeclassify.operator,
            kubeclassify.inference,
            kubeclassify.gateway,
        )
    }
    assert folders == {"core", "operator", "inference", "gateway"}


def test_the_gateway_documents_its_api_without_a_redis() -> None:
    from kubeclassify.gateway.app import create_app
    from kubeclassify.gateway.config import GatewaySettings

    schema = create_app(GatewaySettings(environment="development")).openapi()
    paths = set(schema["paths"])
    assert {
        "/v1/accounts",
        "/v1/auth/token",
        "/v1/me",
        "/v1/keys",
        "/v1/credits",
        "/healthz",
        "/readyz",
    } <= paths
    assert {"HTTPBearer", "APIKeyHeader", "HTTPBasic"} <= set(schema["components"]["securitySchemes"])


@pytest.mark.parametrize(
    ("value", "says"),
    [("0", "greater than or equal to 1"), ("70000", "less than or equal to 65535"), ("abc", "integer")],
)
def test_gateway_run_refuses_a_bad_metrics_port(
    value: str, says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECLASSIFY_ENVIRONMENT", "development")
    monkeypatch.setenv("KUBECLASSIFY_GATEWAY__METRICS_PORT", value)
    assert cli.main(["gateway", "run"]) == 2
    err = capsys.readouterr().err
    assert "metrics_port" in err and says in err and "Traceback" not in err


def test_the_operator_refuses_bad_settings_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECLASSIFY_OPERATOR__METRICS_PORT", "abc")
    assert cli.main(["operator", "run"]) == 2
    assert "operator.metrics_port" in capsys.readouterr().err


def test_gateway_run_stops_when_its_metrics_port_is_taken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("KUBECLASSIFY_ENVIRONMENT", "development")
        monkeypatch.setenv("KUBECLASSIFY_GATEWAY__METRICS_PORT", str(port))
        assert cli.main(["gateway", "run", "--port", "0"]) == 2  # before the API is served
    assert f"cannot serve /metrics on port {port}" in capsys.readouterr().err


def test_every_command_says_what_it_does_in_its_help() -> None:
    import argparse

    def commands(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
        found = [(path, parser)]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += commands(sub, f"{path} {name}")
        return found

    every = commands(cli.build_parser(), "kubeclassify")
    assert len(every) > 20
    missing = [path for path, parser in every if not (parser.description or "").strip()]
    assert missing == []


def test_a_table_shows_nothing_for_a_missing_value(capsys: pytest.CaptureFixture[str]) -> None:
    from kubeclassify.cli.console import table

    table([{"name": "digits", "description": None}], ["name", "description"])
    assert "None" not in capsys.readouterr().out


UNREACHABLE = ["--gateway", "http://127.0.0.1:9", "--api-key", "kc_x"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["classify", "/nonexistent.png", *UNREACHABLE], 2, "No such file"),
        (["batch", "status", "x", *UNREACHABLE], 4, "cannot reach the gateway"),
        (["batch", "submit", "--csv", "/nonexistent.csv", *UNREACHABLE], 2, "No such file"),
        (["credits", *UNREACHABLE], 4, "cannot reach the gateway"),
        (
            ["token", "--gateway", "http://127.0.0.1:9", "--username", "a", "--password", "b"],
            4,
            "cannot reach",
        ),
        (["token", *UNREACHABLE], 2, "an API key is used as it is"),
        (
            ["batch", "results", "x", "--kubeconfig", "/nonexistent"],
            4,
            "cannot use the kubeconfig /nonexistent",
        ),
        (
            ["batch", "submit", "--resource", "examples/batch-one-date.yaml"],
            2,
            "--resource goes with --kubeconfig",
        ),
        (["model", "deployment", "/nonexistent"], 2, "no model card"),
        (["up", "--model", "/nonexistent", "--home", "/nonexistent-home"], 2, "is not an exported model"),
        (["batch", "run", "--batch", "/nonexistent.yaml"], 2, "cannot read the ClassificationBatch"),
        (["operator", "tick", "daily"], 2, "no namespace"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_a_failing_command_says_why_in_one_line_with_its_exit_code(
    args: list[str], code: int, says: str, tmp_path: Path
) -> None:
    """The exit codes the README gives: 2 refused or bad input, 4 cannot reach (or the service failed).
    With no local stack (an empty home): what a checkout's `.local/stack` holds changes nothing here."""
    done = run(*args, home=tmp_path)
    assert done.returncode == code, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("kubeclassify") and says in done.stderr, done.stderr


def test_unusable_submit_arguments_are_refused_before_the_gateway_is_called(tmp_path: Path) -> None:
    """With a local stack recorded (whose gateway is not running), `batch submit --resource` without
    --kubeconfig is a usage error, exit 2: it signed in to the stack's gateway first and exited 4
    with "cannot reach the gateway" (seen when a checkout had run `make up`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    stack = {
        "home": str(tmp_path),
        "s3": {},
        "redis_url": "redis://127.0.0.1:1/0",
        "token_secret": "x" * 32,
        "admin_password": "not-running",
        "services": {"gateway": {"pid": 1, "url": f"http://127.0.0.1:{closed}", "log": "gateway.log"}},
    }
    (tmp_path / "stack.json").write_text(json.dumps(stack))
    done = run("batch", "submit", "--resource", "examples/batch-one-date.yaml", home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "--resource goes with --kubeconfig" in done.stderr
