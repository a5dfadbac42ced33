"""The CRDs are generated from the models, complete enough for `kubectl explain`, and in step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeclassify.core import crds

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "charts" / "kubeclassify-crds" / "templates"
ALL = crds.all_crds()


def test_committed_crds_match_the_models() -> None:
    assert crds.drift(CRD_DIR) == [], "run `kubeclassify crds` and commit the result"


def test_drift_is_detected(tmp_path: Path) -> None:
    crds.write(tmp_path)
    path = tmp_path / "modeldeployments.yaml"
    path.write_text(path.read_text().replace("minimum: 0", "minimum: 1", 1))
    diffs = crds.drift(tmp_path)
    assert len(diffs) == 1 and "modeldeployments.yaml" in diffs[0]


def walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out += walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.mark.parametrize("name", sorted(ALL))
def test_schema_is_structural_and_described(name: str) -> None:
    version = ALL[name]["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    for path, node in walk(root["properties"]["spec"], "spec") + walk(root["properties"]["status"], "status"):
        if not path.endswith(("[]", "{}")) or node.get("type") == "object":
            assert node.get("description"), f"{path} has no description"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert "$ref" not in node and "title" not in node and "const" not in node, path
        for key in ("oneOf", "anyOf", "not"):
            for sub in node.get(key, []) if key != "not" else [node.get(key, {})]:
                assert set(sub) <= {"required", "type"}, f"{path}.{key} may only constrain, not declare"


@pytest.mark.parametrize("name", sorted(ALL))
def test_names_subresources_and_printer_columns(name: str) -> None:
    crd = ALL[name]
    names = crd["spec"]["names"]
    assert names["categories"] == ["kubeclassify"]
    assert names["shortNames"] in (["md"], ["cb"])
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        node = schema
        for part in column["jsonPath"].strip(".").split("."):
            if part == "metadata":
                break
            node = node["properties"][part]
        else:
            assert node["type"] == column["type"], column  # e.g. kubectl formats a number as one
    if names["shortNames"] == ["cb"]:  # a run's progress, speed and time left, in `kubectl get cb`
        columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
        assert {"Progress", "Img/s", "ETA"} <= set(columns), columns


def test_crds_survive_uninstall() -> None:
    for crd in ALL.values():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
