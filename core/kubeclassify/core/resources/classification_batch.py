"""ClassificationBatch: classify a set of images once, for one date, or daily on a schedule."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from kubeclassify.core.constants import ANNOTATION_ADMISSION, IMAGE_EXTENSIONS, LABEL_OWNER
from kubeclassify.core.resources.common import (
    Condition,
    Cron,
    CustomResource,
    DataUri,
    DatedDataUri,
    HttpUrl,
    IsoDate,
    Model,
    ResourcesSpec,
    TimeZone,
    has_placeholder,
    one_of_required,
)

BatchPhase = Literal[
    "Pending", "AwaitingAdmission", "Running", "Succeeded", "Failed", "Scheduled", "Suspended"
]
# A run that has ended and will not change again (the gateway's batches end in the same two states).
ENDED_PHASES: tuple[BatchPhase, ...] = ("Succeeded", "Failed")
BatchMode = Literal["inProcess", "remote"]
OutputFormat = Literal["csv", "jsonl"]

_COLUMN_PATTERN = r"^[^\r\n,\"]{1,128}$"  # a CSV header cell that needs no quoting


class ModelRef(Model):
    """The ModelDeployment whose model, preprocessing and labels the batch uses."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="A ModelDeployment in the batch's namespace; during a canary its stable version is used.",
    )


class ManifestInput(Model):
    """A CSV in object storage that lists image paths, and for date filtering, their dates."""

    uri: DataUri = Field(description="The manifest CSV, e.g. s3://data/manifest.csv.")
    root: DataUri | None = Field(
        None, description="What the paths in the CSV are relative to; the manifest's folder when unset."
    )
    path_column: str = Field("filepath", pattern=_COLUMN_PATTERN, description="The column with image paths.")
    date_column: str = Field(
        "date",
        pattern=_COLUMN_PATTERN,
        description="The column with each image's date (YYYY-MM-DD); needed only when filtering by date.",
    )


class PrefixInput(Model):
    """Every image under an object-storage prefix."""

    uri: DatedDataUri = Field(
        description="The prefix, e.g. s3://data/images/{date}/; `{date}` becomes the batch's date."
    )
    extensions: list[str] = Field(
        default_factory=lambda: list(IMAGE_EXTENSIONS),
        description="File extensions taken as images (case-insensitive); other objects are skipped.",
    )


class UrlsInput(Model):
    """A CSV of image URLs, or of S3 paths under the owner's own prefix."""

    uri: DataUri = Field(description="The CSV, e.g. s3://uploads/alice/batch-1.csv.")
    column: str = Field("url", pattern=_COLUMN_PATTERN, description="The column with the URLs.")


class BatchInput(Model):
    """Exactly one source of images."""

    model_config = ConfigDict(json_schema_extra=one_of_required("manifest", "prefix", "urls"))

    manifest: ManifestInput | None = Field(None, description="Images listed in a manifest CSV.")
    prefix: PrefixInput | None = Field(None, description="Every image under a prefix.")
    urls: UrlsInput | None = Field(None, description="Images at URLs listed in a CSV.")

    @model_validator(mode="after")
    def _exactly_one(self) -> BatchInput:
        given = [n for n in ("manifest", "prefix", "urls") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of manifest, prefix and urls (got {given or 'none'})")
        return self


class ScheduleSpec(Model):
    """Run the batch daily: each run classifies the images of the next unprocessed date."""

    cron: Cron = Field(description="When runs start, in cron syntax, e.g. '30 1 * * *'.")
    time_zone: TimeZone = Field("UTC", description="The IANA time zone of the cron schedule and of dates.")
    start_date: IsoDate | None = Field(
        None, description="The first date to process; the day before the first run when unset."
    )
    catch_up: bool = Field(
        False, description="Process every missed date up to yesterday, one run after another."
    )
    suspend: bool = Field(False, description="Pause the schedule; runs in progress finish.")


class ImageCopySpec(Model):
    """A re-encoded copy of each image, whose URL goes in the results."""

    uri: DatedDataUri = Field(description="Prefix for the copies, e.g. s3://results/{date}/thumbs/.")
    max_size: int = Field(512, ge=16, le=8192, description="Longest side in pixels (aspect kept).")
    quality: int = Field(85, ge=1, le=100, description="Encoder quality.")
    format: Literal["jpeg", "webp", "png"] = Field("jpeg", description="The copies' format.")


class OutputSpec(Model):
    """Where and how results are written."""

    uri: DatedDataUri = Field(
        description="The results object, e.g. s3://results/{date}/predictions.csv;"
        " `{date}` is the batch's date."
    )
    format: OutputFormat = Field("csv", description="csv or jsonl.")
    top_k: int = Field(5, ge=1, le=100, description="How many best labels each row carries.")
    copy_images: ImageCopySpec | None = Field(None, description="Also store a re-encoded copy of each image.")


class WebhookSpec(Model):
    """A URL that receives a signed JSON summary when the batch (or one scheduled run) finishes."""

    url: HttpUrl = Field(description="The receiver; private and link-local addresses are refused.")
    secret_name: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="A Secret whose key signs the body with HMAC-SHA256; unsigned when unset.",
    )
    secret_key: str = Field("secret", description="The key within the Secret.")


class ClassificationBatchSpec(Model):
    """The desired state of a ClassificationBatch."""

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["date", "schedule"]}})

    model_ref: ModelRef = Field(description="The ModelDeployment to classify with.")
    input: BatchInput = Field(description="The images to classify.")
    date: IsoDate | None = Field(None, description="Process this one date (YYYY-MM-DD).")
    schedule: ScheduleSpec | None = Field(None, description="Process one date per run, daily.")
    output: OutputSpec = Field(description="Where results go.")
    mode: BatchMode = Field(
        "inProcess",
        description="inProcess: each Job pod loads the model (fastest);"
        " remote: call the ModelDeployment's predictor.",
    )
    parallelism: int = Field(1, ge=1, le=1000, description="Shards of an Indexed Job, run in parallel.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Compute per shard.")
    retries: int = Field(2, ge=0, le=10, description="Retries per shard (backoffLimitPerIndex).")
    deadline_seconds: int | None = Field(
        None, ge=60, description="Fail a run that takes longer than this (activeDeadlineSeconds)."
    )
    max_failed_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="The share of images that may fail (unreadable, missing, refused by the model) before"
        " the run fails; their rows are published either way.",
    )
    webhook: WebhookSpec | None = Field(None, description="Notify a URL when the batch finishes.")

    @model_validator(mode="after")
    def _check(self) -> ClassificationBatchSpec:
        if self.date is not None and self.schedule is not None:
            raise ValueError("set date or schedule, not both: a scheduled batch picks its own dates")
        dated = self.date is not None or self.schedule is not None
        if self.input.prefix is not None and has_placeholder(self.input.prefix.uri, "date") and not dated:
            raise ValueError("input.prefix.uri uses {date}: set date or schedule")
        if has_placeholder(self.output.uri, "date") and not dated:
            raise ValueError("output.uri uses {date}: set date or schedule")
        if self.schedule is not None and not has_placeholder(self.output.uri, "date"):
            raise ValueError("a scheduled batch writes one result per date: put {date} in output.uri")
        copy = self.output.copy_images
        if copy is not None and has_placeholder(copy.uri, "date") and not dated:
            raise ValueError("output.copyImages.uri uses {date}: set date or schedule")
        return self


class BatchCounts(Model):
    """Image counts of a shard, a run or a batch: the worker writes them (its summary, its
    termination message), the operator sums the shards' into the status, the gateway shows them."""

    total: int = Field(0, ge=0, description="Images in the input.")
    classified: int = Field(0, ge=0, description="Images classified.")
    failed: int = Field(0, ge=0, description="Images that could not be read or decoded (error rows).")
    skipped: int = Field(0, ge=0, description="Objects that are not images, or already published.")
    unadmitted: int | None = Field(
        None,
        ge=0,
        description="Images left unclassified because the run was admitted (paid for) for fewer images"
        " than its input listed when it ran.",
    )

    @classmethod
    def read(cls, data: Mapping[str, Any] | None) -> BatchCounts:
        """Counts from a summary another process wrote (a shard's, a run's status): what is missing
        or empty is 0, and `unadmitted` stays unset unless some images were."""
        data = data or {}
        unadmitted = int(data.get("unadmitted") or 0)
        return cls(
            total=int(data.get("total") or 0),
            classified=int(data.get("classified") or 0),
            failed=int(data.get("failed") or 0),
            skipped=int(data.get("skipped") or 0),
            unadmitted=unadmitted or None,
        )

    def add(self, other: BatchCounts) -> None:
        """Add another shard's counts to these."""
        self.total += other.total
        self.classified += other.classified
        self.failed += other.failed
        self.skipped += other.skipped
        if other.unadmitted:
            self.unadmitted = (self.unadmitted or 0) + other.unadmitted


class WebhookDelivery(Model):
    """A run's webhook: sent, being tried, or given up."""

    time: dt.datetime = Field(description="When the last attempt finished (or the run ended, before any).")
    attempts: int = Field(ge=0, description="Attempts made (0: none yet, or refused before any).")
    status_code: int | None = Field(None, description="The receiver's HTTP status.")
    delivered: bool = Field(description="Whether the receiver answered 2xx.")
    error: str | None = Field(None, description="Why the last attempt failed.")
    pending: bool | None = Field(None, description="Whether it is still to be tried again.")
    delivery: str | None = Field(
        None, description="The delivery id (<namespace>.<job>), sent as X-KubeClassify-Delivery on every try."
    )


class BatchRun(Model):
    """One run of a batch: the whole one-off batch, or one date of a schedule."""

    date: IsoDate | None = Field(None, description="The date processed.")
    phase: BatchPhase = Field(description="How the run ended, or that it is running.")
    job_name: str | None = Field(None, description="The Job that ran it.")
    counts: BatchCounts = Field(default_factory=BatchCounts, description="Image counts.")
    output_uri: str | None = Field(None, description="The results object.")
    start_time: dt.datetime | None = Field(None, description="When the run started.")
    completion_time: dt.datetime | None = Field(None, description="When the run ended.")
    reason: str | None = Field(
        None, description="Why it ended so: Succeeded, NoImages, or the failure's reason."
    )
    message: str | None = Field(None, description="What happened, in a sentence.")
    webhook: WebhookDelivery | None = Field(None, description="The run's webhook.")
    generation: int | None = Field(
        None,
        description="The batch's metadata.generation the run was made from: an edit during a run applies"
        " to the next.",
    )


class PendingRun(Model):
    """A run recorded before its Job exists (intent before the side effect): its id is the name its
    Job gets, so a handler run again finds that Job instead of making another."""

    id: str = Field(description="The run's id, and its Job's name.")
    date: IsoDate | None = Field(None, description="The date it processes.")
    suffix: str | None = Field(None, description="What tells it from the date's other runs (t2, r1).")
    rerun: bool | None = Field(None, description="Whether it replaces the date's published results.")


class ClassificationBatchStatus(Model):
    """The observed state of a ClassificationBatch."""

    phase: BatchPhase | None = Field(None, description="A one-word summary.")
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")
    observed_generation: int | None = Field(None, description="The generation last reconciled.")
    counts: BatchCounts | None = Field(None, description="Image counts of the current or last run.")
    progress: str | None = Field(
        None,
        description="Images done (classified or failed) over the total, e.g. 480/500; while a run goes,"
        " read from its pods every few seconds (the total shows as ? until its shards have counted it).",
    )
    images_per_second: float | None = Field(
        None, ge=0, description="While a run goes: images done per second, all its shards together."
    )
    remaining: str | None = Field(
        None, description="While a run goes: the time it still needs at this speed, e.g. 4m10s (an estimate)."
    )
    estimated_completion_time: dt.datetime | None = Field(
        None, description="While a run goes: when it should end at this speed (an estimate)."
    )
    output_uri: str | None = Field(None, description="The results object of the current or last run.")
    job_name: str | None = Field(None, description="The Job of the current or last run.")
    start_time: dt.datetime | None = Field(None, description="When the current or last run started.")
    completion_time: dt.datetime | None = Field(None, description="When the last run ended.")
    last_processed_date: IsoDate | None = Field(None, description="Scheduled: the last date finished.")
    next_date: IsoDate | None = Field(None, description="Scheduled: the date the next run processes.")
    recent_runs: list[BatchRun] = Field(
        default_factory=list,
        max_length=50,
        description="The last few runs (a schedule's dates, reruns), oldest first.",
    )
    webhook: WebhookDelivery | None = Field(None, description="The last webhook delivery.")
    reruns: int | None = Field(
        None, ge=0, description="Reruns taken so far: the Nth one's Job is named <batch>-<date>-rN."
    )
    rerun_request: str | None = Field(
        None,
        description="The rerun annotation being taken, recorded before its Job is made, so that a"
        " retry finds that Job instead of making another.",
    )
    last_tick: str | None = Field(
        None, description="Scheduled: the value of the kubeclassify.io/tick annotation last taken."
    )
    pending_run: PendingRun | None = Field(
        None,
        description="The run about to start: recorded before its Job is made; a gateway user's run waits"
        " here (phase AwaitingAdmission) until the gateway admits it.",
    )


# A scheduled date is run at most this many times in a row while it fails (counting the runs made
# from the current spec); then the schedule waits for its owner: a rerun of the date, or an edit
# such as suspending and resuming it.
MAX_FAILED_RUNS = 3


def run_id(batch: str, date: dt.date | None, suffix: str | None = None) -> str:
    """A run's id, which is its Job's name: the batch's name, the date for dated runs
    (`daily-20261121`), and a suffix for a date's later runs (`-t2`, a retry; `-r1`, a rerun).
    Within 52 characters (room for the pod names the Job controller derives), shortened with a
    digest so that ids stay unique."""
    parts = [part for part in (date.strftime("%Y%m%d") if date else "", suffix or "") if part]
    return short_name(batch, "-".join(parts), limit=52)


def short_name(name: str, suffix: str, limit: int = 63) -> str:
    """`name-suffix` within `limit` characters, shortened with a digest so names stay unique."""
    full = f"{name}-{suffix}" if suffix else name
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{name[:keep].rstrip('-')}-{digest}-{suffix}" if suffix else f"{name[:keep]}-{digest}"


class Admission(Model):
    """The gateway's answer to a pending run of one of its users' batches, in the batch's annotation
    kubeclassify.io/admission: admitted for `images` images (their credits reserved), or refused."""

    run: str = Field(description="The run's id (status.pendingRun.id).")
    images: int | None = Field(
        None, ge=0, description="Admitted: the images paid for; the run classifies at most these."
    )
    refused: str | None = Field(None, description="Refused: why (e.g. out of credits).")

    def annotation(self) -> dict[str, str]:
        return {ANNOTATION_ADMISSION: self.model_dump_json(by_alias=True, exclude_none=True)}


def needs_admission(metadata: Mapping[str, Any]) -> bool:
    """Whether a batch's runs wait for the gateway: a gateway user's batch (it carries the owner
    label, which only the gateway may set). Batches applied with kubectl run as they are."""
    return bool((metadata.get("labels") or {}).get(LABEL_OWNER))


def admission_of(metadata: Mapping[str, Any]) -> Admission | None:
    """The gateway's latest answer, or None (none yet, or one that cannot be read)."""
    raw = (metadata.get("annotations") or {}).get(ANNOTATION_ADMISSION)
    try:
        return Admission.model_validate(json.loads(raw)) if raw else None
    except (ValueError, TypeError):
        return None


# The conditions the operator sets on a ClassificationBatch: Ready (the spec and its model are
# usable) and Succeeded (how the last run ended: False, with the failure's reason and message).
CONDITION_READY = "Ready"
CONDITION_SUCCEEDED = "Succeeded"


class BatchReason(StrEnum):
    """The reasons the operator gives in a ClassificationBatch's conditions, runs and Events (a
    failed Job's own reason, such as DeadlineExceeded, is passed on as Kubernetes gives it)."""

    SUCCEEDED = "Succeeded"  # a run classified its images
    NO_IMAGES = "NoImages"  # a run found none: its date is done
    JOB_CREATED = "JobCreated"
    SCHEDULED = "Scheduled"
    AWAITING_ADMISSION = "AwaitingAdmission"  # a gateway user's run waits for the gateway
    ADMISSION_REFUSED = "AdmissionRefused"  # the gateway refused it (its owner cannot pay)
    RETRIES_EXHAUSTED = "RetriesExhausted"  # a date failed MAX_FAILED_RUNS times in a row
    JOB_DELETED = "JobDeleted"  # its Job was deleted before it finished
    JOB_FAILED = "JobFailed"
    TOO_MANY_UNREADABLE_IMAGES = "TooManyUnreadableImages"
    INVALID_SPEC = "InvalidSpec"
    INVALID_RERUN_DATE = "InvalidRerunDate"
    POLICY_DENIED = "PolicyDenied"
    WEBHOOK_FAILED = "WebhookFailed"
    MODEL_DEPLOYMENT_NOT_FOUND = "ModelDeploymentNotFound"
    MODEL_DEPLOYMENT_NOT_READY = "ModelDeploymentNotReady"
    MODEL_DEPLOYMENT_INVALID = "ModelDeploymentInvalid"


def failure_message(status: Mapping[str, Any] | None) -> str:
    """Why a ClassificationBatch failed, from its status as the operator writes it ("" if it did
    not): its last run's Succeeded=False condition, or, for a batch the operator refused to run at
    all (phase Failed: an invalid spec, a policy denial), its Ready=False condition."""
    conditions = {c.get("type"): c for c in (status or {}).get("conditions") or []}
    types = [CONDITION_SUCCEEDED] + ([CONDITION_READY] if (status or {}).get("phase") == "Failed" else [])
    for type_ in types:
        condition = conditions.get(type_) or {}
        if condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason") or "")
    return ""


class ClassificationBatch(CustomResource):
    """A whole ClassificationBatch resource, as read from the Kubernetes API."""

    kind: Literal["ClassificationBatch"] = Field("ClassificationBatch", description="ClassificationBatch")
    spec: ClassificationBatchSpec = Field(description="The desired state.")
    status: ClassificationBatchStatus | None = Field(None, description="The observed state.")
