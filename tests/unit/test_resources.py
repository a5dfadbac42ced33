"""The custom-resource contract: examples are valid everywhere, invalid resources are refused by
the models and by the CRD schema alike, each with a message that names the field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.schemas import load_crds, schema_errors
from pydantic import ValidationError

from kubeclassify.core.resources import (
    ClassificationBatch,
    ClassificationBatchSpec,
    Condition,
    ModelDeployment,
    ModelDeploymentSpec,
)
from kubeclassify.core.resources.common import set_condition

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID = sorted((ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml"))
MODELS = {"ModelDeployment": ModelDeployment, "ClassificationBatch": ClassificationBatch}
CRDS = load_crds()


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


def model_errors(obj: dict[str, Any]) -> list[str]:
    try:
        MODELS[obj["kind"]].model_validate(obj)
    except ValidationError as e:
        return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
    return []


def contains(big: Any, small: Any) -> bool:
    """Whether `small` is part of `big` (dicts by key, everything else by equality)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and contains(big[k], v) for k, v in small.items())
    return bool(big == small)


def test_there_are_examples_of_every_kind() -> None:
    kinds = {load(p)["kind"] for p in EXAMPLES}
    assert kinds == {"ModelDeployment", "ClassificationBatch"}
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_valid_and_round_trips(path: Path) -> None:
    obj = load(path)
    assert schema_errors(obj, CRDS) == []
    assert model_errors(obj) == []
    model = MODELS[obj["kind"]].model_validate(obj)
    dumped = model.to_k8s()
    assert contains(dumped, obj), "nothing the user wrote may be lost"
    assert MODELS[obj["kind"]].model_validate(dumped) == model
    assert schema_errors(dumped, CRDS) == [], "defaults the models add must be valid for the API server too"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_resource_is_refused_by_both_naming_the_field(path: Path) -> None:
    field = path.read_text().splitlines()[0].removeprefix("# error: ").strip()
    obj = load(path)
    from_schema = schema_errors(obj, CRDS)
    from_models = model_errors(obj)
    assert from_schema, "the CRD schema accepted it"
    assert from_models, "the models accepted it"
    parent, _, leaf = field.rpartition(".")
    assert any(
        e.startswith(f"{field}:") or (e.startswith(f"{parent}:") and leaf in e) for e in from_schema
    ), from_schema
    assert any(e.startswith(field) for e in from_models), from_models


def batch_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "modelRef": {"name": "digits"},
        "input": {"manifest": {"uri": "s3://incoming/metadata.csv"}},
        "output": {"uri": "s3://results/{date}/predictions.csv"},
        "date": "2026-11-20",
    }
    spec.update(changes)
    return {k: v for k, v in spec.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"date": None}, "output.uri uses {date}: set date or schedule"),
        (
            {"date": None, "schedule": {"cron": "0 2 * * *"}, "output": {"uri": "s3://results/all.csv"}},
            "put {date} in output.uri",
        ),
        (
            {"date": None, "schedule": {"cron": "0 2 * * *", "timeZone": "Mars/Olympus"}},
            "not an IANA time zone",
        ),
        ({"date": None, "schedule": {"cron": "61 2 * * *"}}, "is not a cron schedule"),
        ({"output": {"uri": "s3://results/{day}/p.csv"}}, "unknown placeholders"),
        ({"date": "2026-02-30"}, "not a real calendar date"),
        ({"date": dt.datetime(2026, 2, 3, 4, 5)}, "not a date and time"),
        ({"webhook": {"url": "ftp://example.com/hook"}}, "not a valid URI"),
        ({"modelRef": {"name": "Digits_Model"}}, "should match pattern"),
    ],
)
def test_batch_spec_cross_field_rules(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as e:
        ClassificationBatchSpec.model_validate(batch_spec(**changes))
    assert message in str(e.value)


def test_yaml_dates_and_integer_quantities_are_accepted() -> None:
    spec = ClassificationBatchSpec.model_validate(
        batch_spec(date=dt.date(2026, 11, 20), resources={"cpu": 2, "memory": "4Gi"})
    )
    assert spec.to_k8s()["date"] == "2026-11-20"
    assert spec.resources.cpu == "2"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"model": {"uri": "s3://models/d/"}, "replicas": {"min": 3, "max": 1}}, "must not exceed max"),
        ({"model": {"uri": "s3://models/d/"}, "input": {"colorMode": "grayscale"}}, "channels 1"),
        (
            {"model": {"uri": "s3://models/d/", "labels": ["a", "b"], "labelsUri": "s3://models/l.json"}},
            "at most one",
        ),
        ({"model": {"uri": "s3://models/d/", "labels": ["a", "a"]}}, "unique"),
        ({"model": {"uri": "s3://models/d.keras", "format": "savedmodel"}}, "format keras"),
        (
            {"model": {"uri": "s3://models/d/"}, "storage": {"secretName": "a", "serviceAccountName": "b"}},
            "at most one",
        ),
        ({"model": {"uri": "s3://models/d/"}, "resources": {"cpu": True}}, "not a Kubernetes quantity"),
    ],
)
def test_model_deployment_cross_field_rules(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as e:
        ModelDeploymentSpec.model_validate(spec)
    assert message in str(e.value)


def test_model_format_is_inferred_from_the_uri() -> None:
    assert (
        ModelDeploymentSpec.model_validate({"model": {"uri": "s3://models/d.keras"}}).model.resolved_format
        == "keras"
    )
    assert ModelDeploymentSpec.model_validate({"model": {"uri": "pvc://models/d"}}).model.resolved_format == (
        "savedmodel"
    )


def test_set_condition_moves_transition_time_only_when_status_changes() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    t1 = t0 + dt.timedelta(minutes=5)
    conds = set_condition([], "Ready", "False", "Pending", "waiting", observed_generation=1, now=t0)
    conds = set_condition(
        conds, "Ready", "False", "StillPending", "waiting more", observed_generation=2, now=t1
    )
    assert conds == [
        Condition(
            type="Ready",
            status="False",
            reason="StillPending",
            message="waiting more",
            last_transition_time=t0,
            observed_generation=2,
        )
    ]
    conds = set_condition(conds, "Ready", "True", "Ready", now=t1)
    conds = set_condition(conds, "Degraded", "False", "Healthy", now=t1)
    assert [(c.type, c.status, c.last_transition_time) for c in conds] == [
        ("Ready", "True", t1),
        ("Degraded", "False", t1),
    ]
