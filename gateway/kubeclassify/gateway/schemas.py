"""The gateway's API shapes: what requests carry and answers hold, apart from the records the
gateway keeps on Redis (`images`, `batches`, `schedules`, `accounts`) and from the routes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from kubeclassify.core.resources import BatchCounts
from kubeclassify.gateway.accounts import USERNAME


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    uid: str
    label: str
    score: float
    top_k: list[LabelScore]
    model_name: str
    model_version: str


class Registration(BaseModel):
    username: str = Field(
        pattern=USERNAME.pattern,
        description="3-32 lower-case letters, digits and dashes; starts with a letter.",
    )
    password: str = Field(min_length=10, max_length=256, description="At least 10 characters.")


class Account(BaseModel):
    username: str
    role: str
    created: dt.datetime = Field(description="When, in RFC 3339 (UTC).")
    credits: int


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class KeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="What the key is for.")


class KeyInfo(BaseModel):
    id: str
    name: str
    created: dt.datetime = Field(description="When, in RFC 3339 (UTC).")


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=256)
    new_password: str = Field(min_length=10, max_length=256, description="At least 10 characters.")


class AccountUpdate(BaseModel):
    disabled: bool = Field(description="Disabled: its password, keys and tokens are refused at once.")


class AuditEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    event: str = Field(
        description="signed-in, sign-in-failed, signed-out, password-changed, key-created, key-revoked,"
        " refilled, account-created, role-changed, disabled or enabled; other fields say more."
    )
    time: dt.datetime


class Balance(BaseModel):
    username: str
    credits: int


class Refill(BaseModel):
    amount: int | None = Field(
        None, ge=1, le=10_000_000, description="Credits to add (default: the refill setting)."
    )


class Readiness(BaseModel):
    status: str = Field(description="ok, or unavailable.")
    redis: str | None = Field(None, description="ok, or the error Redis gave.")
    s3: str | None = Field(None, description="ok, or the error S3 gave for the images bucket.")
    models: str | None = Field(None, description="The error the Kubernetes API gave, if it did.")


class ImageInfo(BaseModel):
    uid: str
    owner: str
    label: str
    score: float
    top_k: list[LabelScore]
    model_name: str
    model_version: str
    time: dt.datetime = Field(description="When it was classified, in RFC 3339 (UTC).")
    filename: str
    content_type: str
    path: str = Field(
        description="The image's name under my images (<uid>.<ext>): a batch CSV's path column."
    )


class ImagePage(BaseModel):
    items: list[ImageInfo]
    total: int
    offset: int
    limit: int


class BatchInfo(BaseModel):
    name: str = Field(description="The batch's id: <owner>-<short id>.")
    owner: str
    model: str
    input: str = Field(description="url or path: what the CSV lists.")
    state: str = Field(description="Pending, Running, Succeeded or Failed.")
    message: str = Field(description="Why it failed (or 'cancelled by its owner').")
    counts: BatchCounts = Field(
        description="total: the images paid for; the others grow while it runs, as its run reports them."
    )
    images_per_second: float | None = Field(None, description="While it runs: images done per second.")
    estimated_completion_time: dt.datetime | None = Field(
        None, description="While it runs: when it should end at that speed (an estimate), RFC 3339."
    )
    reserved: int = Field(description="Credits taken at creation; what was not used is given back.")
    created: dt.datetime = Field(description="When it was made, in RFC 3339 (UTC).")
    finished: dt.datetime | None = Field(description="When it ended, in RFC 3339 (UTC).")
    webhook_delivered: bool | None


class BatchPage(BaseModel):
    items: list[BatchInfo]
    total: int
    offset: int
    limit: int


class ResultRow(BaseModel):
    """One input image's result, as the batch worker wrote it, with typed fields."""

    id: int = Field(description="Its position in the input.")
    source: str = Field(description="The image: a URL, or the object it was read from.")
    date: str | None = Field(description="The date it belongs to (date batches).")
    label: str | None = Field(description="The top label; none when the image failed.")
    score: float | None = Field(description="The top label's probability.")
    top_k: list[LabelScore] = Field(description="The best labels with their probabilities, best first.")
    model_name: str
    model_version: str
    error: str | None = Field(description="Why the image could not be classified; none when it was.")
    time: dt.datetime | None = Field(description="When the batch ran, in RFC 3339.")
    extra: dict[str, str] = Field(
        description="The input's other columns, carried to the results (input_<name> where a name clashes)."
    )


LabelFilter = Annotated[str | None, Query(max_length=256, description="Only the rows with this top label.")]


class ResultPage(BaseModel):
    rows: list[ResultRow]
    offset: int
    limit: int
    more: bool


class WebhookSecret(BaseModel):
    secret: str = Field(description="Signs every batch notification (X-KubeClassify-Signature); shown once.")


class ModelInfo(BaseModel):
    name: str
    ready: bool
    default: bool
    version: str | None = None
    labels: list[str] | None = None
    description: str | None = None


class ScheduleRequest(BaseModel):
    cron: str = Field(max_length=100, description="When runs start, e.g. '30 1 * * *' ('* * * * *' to try).")
    time_zone: str = Field("UTC", max_length=64, description="IANA time zone of the cron and of dates.")
    start_date: dt.date | None = Field(None, description="The first date to process (default: yesterday).")
    catch_up: bool = Field(False, description="Process missed days one by one instead of skipping them.")
    model: str | None = Field(None, max_length=63, description="A model (default: the default).")
    webhook_url: str | None = Field(None, max_length=2048, description="Told when each run ends.")


class ScheduleEdit(BaseModel):
    cron: str | None = Field(None, max_length=100, description="When runs start.")
    time_zone: str | None = Field(None, max_length=64, description="IANA time zone of the cron and of dates.")
    catch_up: bool | None = Field(
        None, description="Process missed days one by one instead of skipping them."
    )
    model: str | None = Field(None, max_length=63, description="A model.")
    webhook_url: str | None = Field(
        None, max_length=2048, description="Told when each run ends; empty: none."
    )


class ScheduleInfo(BaseModel):
    name: str
    owner: str
    model: str
    cron: str
    time_zone: str
    start_date: str | None
    catch_up: bool
    paused: bool
    reason: str = Field(description="Why the schedule is paused, when it is.")
    last_date: str | None = Field(
        description="The last date done: its run succeeded, or it had no images (not a failed run)."
    )
    failures: int = Field(
        0, description="Failed runs in a row of the date it is on; it pauses after three, with the reason."
    )
    last_error: str = Field("", description="Why the last run failed, while the date is not done.")
    next_date: str = Field(description="The date the next run processes.")
    next_run: dt.datetime | None = Field(
        description="When the next run starts, RFC 3339 (none while paused)."
    )
    created: dt.datetime = Field(description="When it was made, in RFC 3339 (UTC).")


class ScheduleRun(BaseModel):
    date: str | None = Field(description="The date it processes.")
    batch: str | None = Field(description="Its batch (local backend) or its Job (kubernetes).")
    state: str = Field(description="Pending, Running, Succeeded or Failed.")
    message: str | None = Field(None, description="Why it failed.")
    counts: BatchCounts
    started: dt.datetime | None = Field(None, description="When it started, RFC 3339.")
    finished: dt.datetime | None = Field(None, description="When it ended, RFC 3339.")


class FiredInfo(BaseModel):
    schedule: str
    date: str | None = Field(
        description="The date the firing took (none with the kubernetes backend: the operator takes it)."
    )
    batch: str | None = Field(
        description="What runs it: a batch (local backend) or the ClassificationBatch; none when the"
        " day had no images, so it is done at once."
    )


class RunInfo(BaseModel):
    schedule: str
    date: str
    batch: str = Field(description="What runs it: a batch (local backend) or the ClassificationBatch.")
