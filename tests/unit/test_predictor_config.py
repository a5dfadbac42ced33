"""The predictor's configuration: a file or the environment, as the operator sets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kubeclassify.inference.predictor.server import ENV_SPEC, non_utf8_binary_bytes, read_spec


def test_spec_from_a_whole_resource_file(tmp_path: Path) -> None:
    path = tmp_path / "md.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubeclassify.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "digits"},
                "spec": {"model": {"uri": "s3://models/d/"}},
            }
        )
    )
    spec, name = read_spec(str(path))
    assert name == "digits" and spec.model.uri == "s3://models/d/"


def test_spec_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        ENV_SPEC, json.dumps({"model": {"uri": "file:///models/d"}, "batching": {"maxBatchSize": 8}})
    )
    spec, name = read_spec(None)
    assert name is None and spec.batching.max_batch_size == 8


def test_an_invalid_spec_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SPEC, json.dumps({"model": {"uri": "gs://models/d"}}))
    with pytest.raises(ValueError, match="not a valid URI"):
        read_spec(None)
    monkeypatch.delenv(ENV_SPEC)
    with pytest.raises(SystemExit, match="no ModelDeployment"):
        read_spec(None)


def binary_request(elements: list[bytes]) -> tuple[bytes, int]:
    section = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [len(elements)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(section)},
                }
            ]
        }
    ).encode()
    return header + section, len(header)


def test_non_utf8_binary_bytes_are_found() -> None:
    assert non_utf8_binary_bytes(*binary_request([b"aGVsbG8=", b"d29ybGQ="])) is None
    assert non_utf8_binary_bytes(*binary_request([b"aGVsbG8=", b"\xff\xd8\xff\xe0"])) == "image"
    assert non_utf8_binary_bytes(b"{not json", 9) is None
