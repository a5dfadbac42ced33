"""Generate the CustomResourceDefinitions from the pydantic models (the single source of truth).

`kubeclassify crds` writes them into the CRD chart; `kubeclassify crds --check` fails when the
committed files differ from what the models give.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from kubeclassify.core import constants as c
from kubeclassify.core.resources import (
    ClassificationBatchSpec,
    ClassificationBatchStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)

DEFAULT_OUTPUT = Path("charts/kubeclassify-crds/templates")

# The keywords a structural schema may carry; anything else pydantic emits (title, const...) goes.
# They are written in this order, so that the YAML reads well.
_ORDER = (
    "description",
    "type",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "format",
    "enum",
    "default",
    "pattern",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "required",
    "oneOf",
    "anyOf",
    "not",
    "properties",
    "items",
    "additionalProperties",
)

_PRINTER_COLUMNS = {
    c.MODEL_DEPLOYMENT: [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.uri", "priority": 1},
        {"name": "Version", "type": "string", "jsonPath": ".status.stableVersion"},
        {"name": "Canary", "type": "string", "jsonPath": ".status.canaryVersion"},
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    c.CLASSIFICATION_BATCH: [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Model", "type": "string", "jsonPath": ".spec.modelRef.name"},
        {"name": "Date", "type": "string", "jsonPath": ".spec.date"},
        {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule.cron"},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
        {"name": "Img/s", "type": "number", "jsonPath": ".status.imagesPerSecond"},
        {"name": "ETA", "type": "string", "jsonPath": ".status.remaining"},
        {"name": "Next", "type": "string", "jsonPath": ".status.nextDate", "priority": 1},
        {"name": "Output", "type": "string", "jsonPath": ".status.outputUri", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}

_DESCRIPTIONS = {
    c.MODEL_DEPLOYMENT: "A TensorFlow image classifier served by a KServe InferenceService,"
    " on GPU nodes when asked, with canary roll-outs.",
    c.CLASSIFICATION_BATCH: "Classify the images of a manifest, a prefix or a list of URLs into a"
    " results file, once, for one date, or daily on a schedule.",
}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema as a Kubernetes structural schema: references inlined, optional
    fields without null, only the keywords the API server understands."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        while True:
            if "$ref" in node:
                target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
                # A field's own description says more than the referenced model's docstring.
                target.update({k: v for k, v in node.items() if k in ("description", "default")})
                node = target
                continue
            variants = node.get("anyOf")
            not_null = [v for v in variants or [] if v.get("type") != "null"]
            if variants and len(not_null) == 1 and len(not_null) < len(variants):
                inner = dict(not_null[0])
                inner.update({k: v for k, v in node.items() if k in ("description", "default")})
                node = inner
                continue
            break
        if node.get("default", 0) is None:
            del node["default"]
        if "exclusiveMinimum" in node:  # OpenAPI v3.0 wants a number and a flag
            node["minimum"], node["exclusiveMinimum"] = node["exclusiveMinimum"], True
        if "const" in node:
            node["enum"] = [node.pop("const")]
        if node.get("additionalProperties") is False:
            del node["additionalProperties"]  # structural schemas prune unknown fields instead
        if "properties" in node or node.get("additionalProperties"):
            node.setdefault("type", "object")
        if "enum" in node and "type" not in node:
            types = {type(v) for v in node["enum"]}
            node["type"] = "integer" if types == {int} else "string"
        out = {k: node[k] for k in _ORDER if k in node}
        for key in ("properties",):
            if key in out:
                out[key] = {name: convert(sub) for name, sub in out[key].items()}
        for key in ("items", "additionalProperties", "not"):
            if isinstance(out.get(key), dict):
                out[key] = convert(out[key])
        for key in ("oneOf", "anyOf"):
            if key in out:
                out[key] = convert(out[key])
        return out

    return convert(raw)


def build_crd(kind: str, spec: type[BaseModel], status: type[BaseModel]) -> dict[str, Any]:
    """One CustomResourceDefinition, namespaced, with status as a subresource."""
    plural = c.PLURALS[kind]
    spec_schema = structural_schema(spec)
    status_schema = structural_schema(status)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{c.GROUP}",
            # Uninstalling the chart must not delete every ModelDeployment and ClassificationBatch.
            "annotations": {"helm.sh/resource-policy": "keep"},
            "labels": {c.LABEL_PART_OF: "kubeclassify", c.LABEL_COMPONENT: "crds"},
        },
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": c.SHORT_NAMES[kind],
                "categories": [c.CATEGORY],
            },
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _PRINTER_COLUMNS[kind],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": _DESCRIPTIONS[kind],
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "kubeclassify.io/v1alpha1"},
                                "kind": {"type": "string", "description": kind},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """Every CRD, by the file name it is written to."""
    return {
        "modeldeployments.yaml": build_crd(c.MODEL_DEPLOYMENT, ModelDeploymentSpec, ModelDeploymentStatus),
        "classificationbatches.yaml": build_crd(
            c.CLASSIFICATION_BATCH, ClassificationBatchSpec, ClassificationBatchStatus
        ),
    }


_HEADER = "# Generated by `kubeclassify crds` from kubeclassify.core.resources; do not edit.\n"


def render(crd: dict[str, Any]) -> str:
    """The CRD as the YAML file committed to the chart."""
    return _HEADER + yaml.safe_dump(crd, sort_keys=False, width=100, allow_unicode=True)


def write(output: Path) -> list[Path]:
    """Write every CRD into `output`; returns the paths written."""
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, crd in all_crds().items():
        path = output / name
        path.write_text(render(crd), encoding="utf-8")
        paths.append(path)
    return paths


def drift(output: Path) -> list[str]:
    """Unified diffs between the committed CRDs and the generated ones; empty when in step."""
    diffs = []
    for name, crd in all_crds().items():
        path = output / name
        want = render(crd)
        have = path.read_text(encoding="utf-8") if path.exists() else ""
        if have != want:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        have.splitlines(keepends=True), want.splitlines(keepends=True), str(path), "generated"
                    )
                )
            )
    return diffs


def _run(args: argparse.Namespace) -> int:
    if args.check:
        diffs = drift(args.output)
        for d in diffs:
            sys.stdout.write(d)
        if diffs:
            print("The CRDs differ from the models: run `kubeclassify crds` and commit.", file=sys.stderr)
            return 1
        print(f"CRDs in {args.output} match the models.")
        return 0
    for path in write(args.output):
        print(f"wrote {path}")
    return 0


def register_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kubeclassify crds`: write (or check) the CRDs generated from the models."""
    parser = subparsers.add_parser(
        "crds",
        help="write the CRDs generated from the models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="folder (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the files differ from the models")
    parser.set_defaults(func=_run)
