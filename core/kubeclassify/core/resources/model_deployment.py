"""ModelDeployment: one TensorFlow model, served by a KServe InferenceService."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from kubeclassify.core.resources.common import (
    Condition,
    CustomResource,
    DataUri,
    Model,
    ModelUri,
    ResourcesSpec,
)

ModelFormat = Literal["savedmodel", "keras"]
Scaling = Literal["0..1", "-1..1", "imagenet", "none"]
ColorMode = Literal["rgb", "bgr", "grayscale"]
ResizeMethod = Literal["bilinear", "bicubic", "nearest", "lanczos", "box"]
DeploymentMode = Literal["Knative", "Standard"]
ModelDeploymentPhase = Literal["Pending", "Progressing", "Ready", "Canary", "Failed"]


class ModelSpec(Model):
    """Where the model is and what it predicts."""

    uri: ModelUri = Field(
        description="The model: a SavedModel folder (from `model.export()`) or a `.keras` file,"
        " at s3://bucket/path, pvc://claim/path or file:///path."
    )
    format: ModelFormat | None = Field(
        None, description="savedmodel or keras; when unset, `.keras` URIs are keras, others savedmodel."
    )
    labels: list[str] | None = Field(
        None, min_length=2, description="Class names, in the order of the model's outputs."
    )
    labels_uri: DataUri | None = Field(
        None,
        description="A JSON list or a text file (one name a line) of class names; when neither this"
        " nor `labels` is set, the `labels.json` beside the model is used.",
    )
    description: str | None = Field(None, max_length=2000, description="What the model is for, for people.")
    version: str | None = Field(
        None,
        max_length=128,
        description="The version reported with every result;"
        " defaults to the weights digest in the model card.",
    )

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.labels is not None and self.labels_uri is not None:
            raise ValueError("set at most one of labels and labelsUri")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if self.format == "savedmodel" and self.uri.endswith(".keras"):
            raise ValueError("a .keras file has format keras, not savedmodel")
        return self

    @property
    def resolved_format(self) -> ModelFormat:
        """The format, inferred from the URI when not given."""
        if self.format is not None:
            return self.format
        return "keras" if self.uri.endswith(".keras") else "savedmodel"


class StorageSpec(Model):
    """How pods reach the model's and the data's object storage."""

    endpoint: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+/?$",
        description="The S3 endpoint URL (MinIO, SeaweedFS, Ceph...); AWS S3 when unset.",
    )
    region: str | None = Field(None, description="The S3 region.")
    secret_name: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="A Secret in the namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
    )
    service_account_name: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="A ServiceAccount that carries the credentials (KServe's S3 annotations, or IRSA).",
    )

    @model_validator(mode="after")
    def _check(self) -> StorageSpec:
        if self.secret_name and self.service_account_name:
            raise ValueError("set at most one of secretName and serviceAccountName")
        return self


class ImageInputSpec(Model):
    """How an image becomes the model's input tensor; the predictor and the batch worker share it."""

    height: int = Field(224, ge=8, le=4096, description="Input height in pixels.")
    width: int = Field(224, ge=8, le=4096, description="Input width in pixels.")
    channels: Literal[1, 3] = Field(3, description="1 for grayscale models, 3 for colour.")
    color_mode: ColorMode = Field("rgb", description="rgb, bgr or grayscale; must agree with channels.")
    scaling: Scaling = Field(
        "0..1",
        description="Pixel scaling: 0..1, -1..1, imagenet (mean/std), or none (0..255, for models"
        " that scale inside, such as Keras' EfficientNet).",
    )
    resize_method: ResizeMethod = Field("bilinear", description="The resampling filter.")

    @model_validator(mode="after")
    def _check(self) -> ImageInputSpec:
        if (self.color_mode == "grayscale") != (self.channels == 1):
            raise ValueError("colorMode grayscale goes with channels 1, rgb and bgr with channels 3")
        if self.scaling == "imagenet" and self.channels != 3:
            raise ValueError("scaling imagenet normalises three colour channels: use channels 3")
        return self


class ReplicasSpec(Model):
    """Autoscaling bounds for the predictor."""

    min: int = Field(1, ge=0, le=1000, description="Fewest replicas; 0 lets Knative scale to zero.")
    max: int = Field(1, ge=1, le=1000, description="Most replicas.")
    scale_target: int | None = Field(
        None, ge=1, description="Target concurrent requests (or metric value) per replica."
    )
    scale_metric: Literal["concurrency", "rps", "cpu", "memory"] | None = Field(
        None, description="The autoscaling metric; KServe's default when unset."
    )

    @model_validator(mode="after")
    def _check(self) -> ReplicasSpec:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class BatchingSpec(Model):
    """In-process dynamic batching in the predictor (KServe's batcher sidecar is not used)."""

    max_batch_size: int = Field(32, ge=1, le=1024, description="Most images in one model call.")
    max_latency_ms: int = Field(
        5, ge=0, le=10000, description="Longest a request waits for others to fill a batch."
    )


class CanarySpec(Model):
    """Canary roll-out of a changed model."""

    traffic_percent: int = Field(
        ge=0,
        le=100,
        description="Share of traffic for a changed model; 100 promotes it, 0 rolls it back.",
    )


class ModelDeploymentSpec(Model):
    """The desired state of a ModelDeployment."""

    model: ModelSpec = Field(description="The model to serve.")
    storage: StorageSpec | None = Field(None, description="Object-storage access for the model.")
    input: ImageInputSpec = Field(default_factory=ImageInputSpec, description="Image preprocessing.")
    replicas: ReplicasSpec = Field(default_factory=ReplicasSpec, description="Replica bounds and scaling.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Compute per replica.")
    batching: BatchingSpec = Field(default_factory=BatchingSpec, description="Predictor-side batching.")
    deployment_mode: DeploymentMode | None = Field(
        None, description="KServe's Knative or Standard mode; the operator's default when unset."
    )
    canary: CanarySpec | None = Field(
        None, description="Roll a changed model out as a canary with this share of traffic."
    )


class ModelDeploymentStatus(Model):
    """The observed state of a ModelDeployment."""

    phase: ModelDeploymentPhase | None = Field(None, description="A one-word summary.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready and related conditions.")
    observed_generation: int | None = Field(None, description="The generation last reconciled.")
    url: str | None = Field(
        None,
        description="Where the predictor answers inside the cluster (the InferenceService's"
        " status.address.url): what the gateway and remote batches call.",
    )
    external_url: str | None = Field(
        None,
        description="Where it answers from outside, through KServe's ingress (the InferenceService's"
        " status.url, under its ingress domain), when KServe gives one.",
    )
    inference_service: str | None = Field(None, description="The owned InferenceService's name.")
    ready_replicas: int | None = Field(None, ge=0, description="Predictor replicas that are ready.")
    stable_version: str | None = Field(None, description="The model version serving most traffic.")
    canary_version: str | None = Field(None, description="The canary's model version, during a canary.")
    canary_traffic_percent: int | None = Field(
        None, ge=0, le=100, description="The canary's share of traffic, during a canary."
    )
    last_updated: dt.datetime | None = Field(None, description="When the status last changed.")


class ModelDeployment(CustomResource):
    """A whole ModelDeployment resource, as read from the Kubernetes API."""

    kind: Literal["ModelDeployment"] = Field("ModelDeployment", description="ModelDeployment")
    spec: ModelDeploymentSpec = Field(description="The desired state.")
    status: ModelDeploymentStatus | None = Field(None, description="The observed state.")
