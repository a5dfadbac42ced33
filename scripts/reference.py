"""Write docs/reference.md from the code: the custom resources' fields (from the CRDs the models
generate), the REST endpoints (from the gateway's OpenAPI schema), the settings (from the settings
models) and the metrics (from the Prometheus registry). `--check` fails when the file is stale."""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "reference.md"


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


# -- custom resources ---------------------------------------------------------------------------


def schema_rows(node: dict[str, Any], path: str, required: bool) -> list[str]:
    kind = node.get("type") or ("int or string" if node.get("x-kubernetes-int-or-string") else "object")
    if kind == "array":
        kind = f"array of {node.get('items', {}).get('type', 'object')}"
    extra = []
    if "enum" in node:
        extra.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "default" in node:
        extra.append(f"default `{node['default']}`")
    for key, word in (
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
    ):
        if key in node:
            extra.append(f"{word} {node[key]}")
    rows = []
    if path:
        note = "; ".join(extra)
        rows.append(
            f"| `{path}` | {kind}{' (required)' if required else ''} | {cell(node.get('description', ''))}"
            f"{' (' + note + ')' if note else ''} |"
        )
    props = node.get("properties") or node.get("items", {}).get("properties") or {}
    needed = set(node.get("required") or node.get("items", {}).get("required") or [])
    suffix = "[]" if node.get("type") == "array" else ""
    for name, child in props.items():
        rows += schema_rows(child, f"{path}{suffix}.{name}" if path else name, name in needed)
    return rows


def resources() -> list[str]:
    from kubeclassify.core.crds import all_crds

    out = ["## Custom resources", ""]
    for crd in sorted(all_crds().values(), key=lambda c: c["spec"]["names"]["kind"]):
        names = crd["spec"]["names"]
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]["properties"]
        out += [
            f"### {names['kind']} (`{crd['spec']['group']}/{version['name']}`, short name"
            f" `{names.get('shortNames', [''])[0]}`)",
            "",
            "| field | type | meaning |",
            "| --- | --- | --- |",
            *schema_rows(schema["spec"], "spec", True),
            *schema_rows(schema.get("status", {}), "status", False),
            "",
        ]
    return out


# -- REST ----------------------------------------------------------------------------------------


def endpoints() -> list[str]:
    from kubeclassify.gateway.app import create_app
    from kubeclassify.gateway.config import GatewaySettings

    schema = create_app(GatewaySettings(environment="development")).openapi()
    out = [
        "## REST endpoints",
        "",
        "The gateway serves its OpenAPI schema at `/openapi.json` and interactive docs at `/docs`.",
        "",
        "| method | path | what it does |",
        "| --- | --- | --- |",
    ]
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            out.append(f"| {method.upper()} | `{path}` | {cell(op.get('summary', ''))} |")
    return [*out, ""]


# -- settings ------------------------------------------------------------------------------------


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return (
            "a development value, refused outside development" if "development" in secret else f"`{secret}`"
        )
    if isinstance(value, BaseModel):
        return ""
    if value is None:
        return "unset"
    if isinstance(value, list | dict):
        import json

        return f"`{json.dumps(value, default=lambda m: m.model_dump(mode='json', exclude_none=True))}`"
    return f"`{value}`"


def setting_rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        annotation = field.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if nested is not None and not typing.get_args(annotation):
            rows += setting_rows(nested, env + "__")
            continue
        rows.append(f"| `{env}` | {_default(field)} | {cell(field.description or '')} |")
    return rows


def settings() -> list[str]:
    from kubeclassify.core.settings import Settings
    from kubeclassify.gateway.config import GatewayConfig
    from kubeclassify.operator.config import OperatorConfig

    head = ["| variable | default | meaning |", "| --- | --- | --- |"]
    return [
        "## Settings",
        "",
        "Environment variables; nested fields with `__`; lists and objects as JSON.",
        "",
        "### Every component",
        "",
        *head,
        *setting_rows(Settings, "KUBECLASSIFY_"),
        "",
        "### The operator",
        "",
        *head,
        *setting_rows(OperatorConfig, "KUBECLASSIFY_OPERATOR__"),
        "",
        "### The gateway",
        "",
        *head,
        *setting_rows(GatewayConfig, "KUBECLASSIFY_GATEWAY__"),
        "",
    ]


# -- metrics -------------------------------------------------------------------------------------


def metrics() -> list[str]:
    import importlib

    from prometheus_client.metrics import MetricWrapperBase

    out = [
        "## Metrics",
        "",
        "| metric | type | labels | meaning | served by |",
        "| --- | --- | --- | --- | --- |",
    ]
    where = {
        "kubeclassify.operator.metrics": "the operator (:9090/metrics)",
        "kubeclassify.gateway.metrics": "the gateway (/metrics; :9090 in the chart)",
        "kubeclassify.inference.predictor.metrics": "the predictor (/metrics)",
    }
    for module_name, served in where.items():
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                kind = value._type  # noqa: SLF001
                name = value._name + ("_total" if kind == "counter" else "")  # noqa: SLF001
                labels = ", ".join(f"`{label}`" for label in value._labelnames)  # noqa: SLF001
                out.append(f"| `{name}` | {kind} | {labels} | {cell(value._documentation)} | {served} |")  # noqa: SLF001
    return [*out, ""]


def render() -> str:
    lines = [
        "# KubeClassify reference",
        "",
        "Generated from the code by `make reference` (`python scripts/reference.py`); a test fails when"
        " it is stale. Do not edit by hand.",
        "",
        *resources(),
        *endpoints(),
        *settings(),
        *metrics(),
    ]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when docs/reference.md is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run `make reference`", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
