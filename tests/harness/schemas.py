"""Validate objects against CRD schemas as strictly as a careful API server would.

A real API server prunes unknown fields silently (a misspelt `minReplica` just vanishes), so here
unknown fields are errors: every object schema with properties gets `additionalProperties: false`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "charts" / "kubeclassify-crds" / "templates"


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused and Kubernetes' extensions spelt as JSON Schema."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n)
            return
        if not isinstance(node, dict):
            return
        if node.pop("x-kubernetes-int-or-string", False):
            node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
            node.pop("type", None)
        for value in node.values():
            walk(value)

    walk(schema)
    return schema


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The openAPIV3Schema of one version of a CRD."""
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]
    raise KeyError(f"{crd['metadata']['name']} has no version {version}")


def load_crds(*paths: Path) -> dict[str, dict[str, Any]]:
    """CRDs by `group/Kind`, from YAML files (our chart's when none given)."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths or tuple(sorted(CRD_DIR.glob("*.yaml"))):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                found[f"{doc['spec']['group']}/{doc['spec']['names']['kind']}"] = doc
    return found


def schema_errors(obj: dict[str, Any], crds: dict[str, dict[str, Any]]) -> list[str]:
    """Every way `obj` breaks its CRD's schema, as 'path: message' lines; empty when valid."""
    group, version = obj["apiVersion"].split("/")
    crd = crds[f"{group}/{obj['kind']}"]
    validator = jsonschema.Draft7Validator(
        strict(crd_schema(crd, version)), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
