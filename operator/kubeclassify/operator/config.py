"""The operator's settings: environment variables `KUBECLASSIFY_OPERATOR__*`, validated at start-up."""

from __future__ import annotations

from pydantic import BaseModel, Field

from kubeclassify.core.policy import Policy
from kubeclassify.core.resources.common import Quantity, Toleration
from kubeclassify.core.resources.model_deployment import DeploymentMode
from kubeclassify.core.settings import Settings


class OperatorConfig(BaseModel):
    """What the operator needs to know about the cluster it runs in."""

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty watches every namespace."
    )
    inference_image: str = Field(
        "ghcr.io/kubeclassify/inference:0.1.0",
        description="The image that runs the predictor and the batch worker.",
    )
    operator_image: str = Field(
        "ghcr.io/kubeclassify/operator:0.1.0",
        description="The operator's own image; the daily CronJob's tick pods run it.",
    )
    image_pull_policy: str = Field("IfNotPresent", description="Pull policy for the images.")
    job_ttl_seconds: int = Field(
        86400, ge=0, description="How long finished batch Jobs (and their pods) are kept."
    )
    starting_deadline_seconds: int = Field(
        3600, ge=10, description="How late a missed daily tick may still start."
    )
    gateway_images_uri: str = Field(
        "s3://kubeclassify/images",
        description="The gateway's images (its imagesUri). A batch labelled with a gateway owner reads"
        " by path only under <gatewayImagesUri>/<owner>/, and by URL only http(s), checked by its worker.",
    )
    policy: Policy = Field(
        default_factory=Policy,
        description="What each namespace's resources may name (buckets and prefixes, Secrets,"
        " ServiceAccounts), as JSON; a namespace not listed gets `default`, which names nothing.",
    )
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Networks webhooks may also reach besides public addresses (CIDRs); none by default.",
    )
    recent_runs: int = Field(7, ge=1, le=50, description="Runs a scheduled batch's status keeps.")
    default_deployment_mode: DeploymentMode = Field(
        "Standard", description="KServe's mode for ModelDeployments that do not set one."
    )
    default_cpu: Quantity = Field(
        "1", description="CPU request of a predictor or batch pod whose resource sets no spec.resources.cpu."
    )
    default_memory: Quantity = Field(
        "2Gi",
        description="Memory request and limit of a predictor or batch pod whose resource sets no"
        " spec.resources.memory.",
    )
    gpu_node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"},
        description="Node labels added for pods that ask for GPUs (merged under the resource's own).",
    )
    gpu_tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        description="Tolerations added for pods that ask for GPUs.",
    )
    worker_limit: int = Field(
        500,
        ge=1,
        description="Most objects Kopf follows at once. Each holds its slot a few seconds after its"
        " last event, so this caps the objects handled per second (500 / 5 s = 100 per second).",
    )
    handler_threads: int = Field(20, ge=1, description="Threads that run the handlers.")
    request_timeout: float = Field(60.0, gt=0, description="Seconds for one Kubernetes API request.")
    watch_timeout: int = Field(300, ge=10, description="Seconds before a watch is re-established.")
    liveness_port: int = Field(8080, ge=1, le=65535, description="Port of /healthz.")
    metrics_port: int = Field(9090, ge=1, le=65535, description="Port of /metrics.")
    progress_seconds: float = Field(
        10.0,
        ge=1.0,
        description="How often a running batch's progress is read from its pods' logs into its status.",
    )
    retry_delay: float = Field(
        60.0, gt=0, description="Seconds before retrying after a problem only a person can fix."
    )


class OperatorSettings(Settings):
    """Settings of the operator process."""

    operator: OperatorConfig = Field(default_factory=OperatorConfig, description="The operator.")
