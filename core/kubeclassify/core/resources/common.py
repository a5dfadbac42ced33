"""Building blocks shared by both custom resources: the base model, URIs, quantities,
scheduling constraints and standard conditions."""

from __future__ import annotations

import datetime as dt
import re
import string
import zoneinfo
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, TypeVar

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    """Base of every spec and status model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_k8s(self) -> dict[str, Any]:
        """The object as Kubernetes stores it: camelCase keys, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- URIs -----------------------------------------------------------------------------------

_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
_SCHEME_PATTERNS = {
    "s3": rf"s3://{_BUCKET}(/.*)?",
    "file": r"file:///.*",
    "pvc": r"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?",
    "http": r"https?://[^\s/?#]+([/?#].*)?",
}


def _uri_type(schemes: tuple[str, ...], placeholders: frozenset[str] = frozenset()) -> Any:
    pattern = "^(" + "|".join(_SCHEME_PATTERNS[s] for s in schemes) + ")$"
    compiled = re.compile(pattern)
    shown = ", ".join(f"{s}://" if s != "http" else "http(s)://" for s in schemes)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{value!r} is not a valid URI: expected one of {shown}")
        fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        unknown = fields - placeholders
        if unknown:
            allowed = ", ".join("{" + p + "}" for p in sorted(placeholders)) or "none"
            raise ValueError(f"{value!r} has unknown placeholders {sorted(unknown)}; allowed: {allowed}")
        return value

    return Annotated[str, AfterValidator(check), Field(json_schema_extra={"pattern": pattern})]


ModelUri = _uri_type(("s3", "pvc", "file"))
DataUri = _uri_type(("s3", "file"))
DatedDataUri = _uri_type(("s3", "file"), frozenset({"date"}))
HttpUrl = _uri_type(("http",))


def has_placeholder(template: str, name: str) -> bool:
    """Whether a URI template uses `{name}`."""
    return any(field == name for _, field, _, _ in string.Formatter().parse(template))


# --- Dates, cron, time zones ------------------------------------------------------------------

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_iso_date(value: Any) -> Any:
    # YAML turns an unquoted 2026-01-05 into a date; kubectl and JSON send a string.
    if isinstance(value, dt.datetime):
        raise ValueError("expected a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise ValueError(f"{value!r} is not a date in the form YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a real calendar date") from e


IsoDate = Annotated[
    dt.date,
    BeforeValidator(_parse_iso_date),
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date", "pattern": _DATE_RE.pattern}),
]

_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


_MONTHS = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
_DAYS = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
# Per field, as a Kubernetes CronJob reads it (robfig/cron v3): the largest number and the names.
_CRON_FIELDS: tuple[tuple[str, int, set[str]], ...] = (
    ("minute", 59, set()),
    ("hour", 23, set()),
    ("day", 31, set()),
    ("month", 12, _MONTHS),
    ("weekday", 6, _DAYS),
)


def _check_cron(value: str) -> str:
    if value in _CRON_MACROS:
        return value
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(
            f"{value!r} is not a cron schedule: expected five fields (minute hour day month weekday)"
            f" or one of {', '.join(sorted(_CRON_MACROS))}"
        )
    for field, (name, most, names) in zip(value.split(), _CRON_FIELDS, strict=True):
        for token in re.split(r"[,/-]", field):
            if token in ("*", "?") or token.lower() in names:
                continue
            if not token.isdigit():
                raise ValueError(
                    f"{value!r}: the {name} field cannot hold {token!r} (a Kubernetes CronJob reads"
                    " numbers, ranges, steps, lists, * and month or day names)"
                )
            if int(token) > most:
                sunday = " (Sunday is 0)" if name == "weekday" else ""
                raise ValueError(
                    f"{value!r}: the {name} field runs to {most}{sunday}, as a Kubernetes CronJob reads it"
                )
    return value


def _check_time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"{value!r} is not an IANA time zone such as 'UTC' or 'Europe/Berlin'") from e
    return value


# The API server can only check the shape; the models check the fields' values too.
_CRON_SHAPE = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+(\s+\S+){4})$"
Cron = Annotated[str, AfterValidator(_check_cron), Field(json_schema_extra={"pattern": _CRON_SHAPE})]
TimeZone = Annotated[str, AfterValidator(_check_time_zone)]

# --- Kubernetes quantities and scheduling ------------------------------------------------------

_QUANTITY_RE = re.compile(
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _parse_quantity(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as '500m', '2' or '4Gi'")
    text = str(value)
    if not _QUANTITY_RE.match(text):
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as '500m', '2' or '4Gi'")
    return text


Quantity = Annotated[
    str,
    BeforeValidator(_parse_quantity),
    WithJsonSchema(
        {  # as controller-gen writes quantities: structural, and checked by the API server
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": _QUANTITY_RE.pattern,
        }
    ),
]

LabelMap = dict[str, str]


class Toleration(Model):
    """A toleration, as in a pod spec; GPU nodes usually carry an `nvidia.com/gpu` taint."""

    key: str | None = Field(None, description="The taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(None, description="The taint value, for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="The taint effect to tolerate; all effects when unset."
    )
    toleration_seconds: int | None = Field(
        None, ge=0, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class ResourcesSpec(Model):
    """Compute for each pod: CPU and memory requests, GPUs, and where the pods may run."""

    cpu: Quantity | None = Field(None, description="CPU request per pod, e.g. '2' or '500m'.")
    memory: Quantity | None = Field(
        None, description="Memory per pod, e.g. '4Gi'; used as both request and limit."
    )
    gpu: int = Field(
        0, ge=0, le=16, description="NVIDIA GPUs per pod (an `nvidia.com/gpu` limit); 0 runs on CPU."
    )
    node_selector: LabelMap = Field(
        default_factory=dict, description="Node labels the pods must match, e.g. a GPU node pool."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints the pods tolerate, e.g. `nvidia.com/gpu` on GPU nodes."
    )


# --- Conditions --------------------------------------------------------------------------------

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """A standard Kubernetes condition (as in metav1.Condition)."""

    type: str = Field(description="The aspect this condition reports, e.g. Ready.", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="A CamelCase machine-readable reason for the last transition.",
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field("", description="A human-readable explanation.", max_length=32768)
    last_transition_time: dt.datetime = Field(description="When the status last changed.")
    observed_generation: int | None = Field(
        None, ge=0, description="The metadata.generation this condition was computed from."
    )


def set_condition(
    conditions: Iterable[Condition],
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    now: dt.datetime | None = None,
) -> list[Condition]:
    """Return the conditions with `type` set; its transition time moves only when its status does."""
    new = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now or dt.datetime.now(dt.UTC).replace(microsecond=0),
        observed_generation=observed_generation,
    )
    result = list(conditions)
    for i, old in enumerate(result):
        if old.type == type:
            if old.status == status:
                new.last_transition_time = old.last_transition_time
            result[i] = new
            return result
    return [*result, new]


# --- Whole resources -------------------------------------------------------------------------


class CustomResource(Model):
    """A whole custom resource as read from the Kubernetes API; subclasses add kind, spec, status."""

    api_version: Literal["kubeclassify.io/v1alpha1"] = Field(
        "kubeclassify.io/v1alpha1", description="kubeclassify.io/v1alpha1"
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")


T = TypeVar("T", bound=BaseModel)


def parse_resource(model: type[T], body: dict[str, Any]) -> T:
    """Validate a whole custom resource (apiVersion, kind, metadata, spec, status) as `model`."""
    return model.model_validate(body)


def one_of_required(*names: str) -> Callable[[dict[str, Any]], None]:
    """A JSON-schema hook: exactly one of `names` must be set (kept in the generated CRD)."""

    def extra(schema: dict[str, Any]) -> None:
        schema["oneOf"] = [{"required": [n]} for n in names]

    return extra
