"""`kubeclassify up` and `demo` when a service does not start: the reason and exit 4, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeclassify.cli import stack
from kubeclassify.cli.processes import LaunchError
from kubeclassify.core.cli import main


@pytest.mark.parametrize("command", [["up"], ["demo"]])
def test_a_service_that_does_not_start_is_a_message(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(*_: object, **__: object) -> None:
        raise LaunchError("gateway exited with code 1:\naddress already in use")

    monkeypatch.setattr(stack, "up", fail)
    assert main([*command, "--home", str(tmp_path)]) == 4
    err = capsys.readouterr().err
    assert "kubeclassify: gateway exited with code 1" in err and "address already in use" in err
    assert "Traceback" not in err
