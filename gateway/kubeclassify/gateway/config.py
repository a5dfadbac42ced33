"""The gateway's settings: environment variables `KUBECLASSIFY_GATEWAY__*`, validated at start-up.

The token signing key has a development default that is refused outside development."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from kubeclassify.core.resources.classification_batch import ClassificationBatchSpec, ManifestInput
from kubeclassify.core.settings import Settings, development_secret


class GatewayConfig(BaseModel):
    """Accounts, credits and limits."""

    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis, with its password: redis://:PASSWORD@host:port/db.",
    )
    token_secret: SecretStr = Field(
        default_factory=lambda: development_secret("token-secret"),
        description="Key that signs access tokens (HS256); at least 32 characters.",
        min_length=32,
    )
    token_ttl_seconds: int = Field(3600, ge=60, le=7 * 86400, description="Lifetime of an access token.")
    admin_username: str = Field("admin", description="The first admin's name.")
    admin_password_hash: SecretStr | None = Field(
        None,
        description="The first admin's argon2id password hash (from a Secret); no admin is made when"
        " neither this nor ADMIN_PASSWORD is set.",
    )
    admin_password: SecretStr | None = Field(
        None,
        description="The first admin's password (from a Secret, e.g. one the Helm chart generates), hashed"
        " with argon2id at start-up; ADMIN_PASSWORD_HASH wins when both are set.",
    )
    registration: Literal["open", "closed", "admin-only"] = Field(
        "admin-only",
        description="Who may make accounts with POST /v1/accounts: anyone (open, SIGNUPS_PER_HOUR per"
        " client address), admins only (admin-only), or no one (closed).",
    )
    signups_per_hour: int = Field(
        5, ge=1, description="Open registration: accounts one client address may make in an hour."
    )
    starting_credits: int = Field(
        0, ge=0, description="Credits a new account starts with (admins refill: POST /v1/admin/credits)."
    )
    image_cost: int = Field(1, ge=0, description="Credits one classified image costs.")
    refill_amount: int = Field(100, ge=1, description="Credits an admin refill adds when no amount is given.")
    rate_limit_per_minute: int = Field(
        600,
        ge=1,
        description=(
            "Requests per minute for one account, all its keys and tokens together, over a sliding minute."
        ),
    )
    max_api_keys: int = Field(20, ge=1, le=1000, description="API keys one account may have.")
    max_schedules: int = Field(10, ge=0, description="Schedules one account may have (admins: any number).")
    min_schedule_interval: int = Field(
        3600,
        ge=0,
        description="Fewest seconds between two firings of a user's schedule (admins: any cron). With"
        " ENVIRONMENT=development it defaults to 60, so the one-minute trigger can be tried.",
    )
    login_failures: int = Field(
        5,
        ge=1,
        description="Wrong passwords for a name before it must wait (its keys and tokens still work).",
    )
    login_lockout_seconds: int = Field(300, ge=1, description="How long it waits.")
    login_failures_per_address: int = Field(
        30,
        ge=1,
        description="Failed sign-ins (passwords, keys, tokens) a client address may make in a minute.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDRs) of the proxies in front of the gateway (the ingress):"
        " from them X-Forwarded-For names the client. None by default: the peer is the client.",
    )
    password_workers: int = Field(
        2, ge=1, le=32, description="Threads that hash passwords (argon2id: 64 MiB and tens of ms each)."
    )
    fetch_workers: int = Field(
        16, ge=1, le=256, description="Threads that fetch image URLs: the most fetches at once."
    )
    webhook_workers: int = Field(
        4, ge=1, le=64, description="Threads that send batch webhooks: the most receivers waited on at once."
    )
    fetches_per_account: int = Field(
        4, ge=1, le=256, description="Image URLs one account may have fetched at once."
    )
    images_uri: str = Field(
        "s3://kubeclassify/images", description="Where uploaded images are kept: <images_uri>/<owner>/<uid>."
    )
    models_source: Literal["predictors", "kubernetes"] = Field(
        "predictors",
        description="predictors: the PREDICTORS map (the local stack); kubernetes: the ModelDeployments"
        " of NAMESPACE, whose status gives each predictor's URL.",
    )
    namespace: str = Field("default", description="The namespace of the ModelDeployments (kubernetes).")
    kubeconfig: str | None = Field(
        None, description="A kubeconfig file; in a pod the ServiceAccount is used when unset."
    )
    predictors: dict[str, str] = Field(
        default_factory=dict,
        description="Models by name and their predictor's base URL (the local stack; JSON object).",
    )
    default_model: str | None = Field(None, description="The model used when a request names none.")
    predictor_timeout: float = Field(30.0, gt=0, description="Seconds to wait for the predictor.")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest image accepted.")
    fetch_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Networks that image and webhook URLs may also reach besides public addresses (CIDRs);"
        " none by default.",
    )
    batches_uri: str = Field(
        "s3://kubeclassify/batches",
        description="Where batch CSVs and results are kept: <batches_uri>/<owner>/<batch>/.",
    )
    manifest: ManifestInput | None = Field(
        None,
        description="The daily manifest that date batches and schedules read (uri, root, pathColumn,"
        ' dateColumn), e.g. {"uri": "s3://data/metadata.csv", "root": "s3://data/"}; none by default.',
    )
    batch_backend: Literal["local", "kubernetes"] = Field(
        "local",
        description="Who runs batches: local (worker processes beside the gateway; one replica only)"
        " or kubernetes (ClassificationBatches in `namespace`, run by the operator).",
    )
    local_batch_concurrency: int = Field(2, ge=1, le=64, description="Local backend: batches run at once.")
    max_csv_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="The largest batch CSV accepted.")
    max_failed_fraction: float = Field(
        ClassificationBatchSpec.model_fields["max_failed_fraction"].default,
        ge=0,
        le=1,
        description="The share of a batch's images that may fail before the batch fails (a request may"
        " ask for another); the results with each error are published either way.",
    )
    max_batch_rows: int = Field(10_000, ge=1, le=10_000_000, description="The most images in one batch.")
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="`kubeclassify gateway run` serves /metrics on this port of its own (the chart sets"
        " 9090), so that nothing which reaches the API, an Ingress included, reaches the metrics; unset:"
        " /metrics beside the API.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; none by default."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as e:
                raise ValueError(f"{entry!r} is not an address or a network (CIDR)") from e
        return value


class GatewaySettings(Settings):
    """Settings of the gateway process."""

    gateway: GatewayConfig = Field(default_factory=GatewayConfig, description="The gateway.")

    @model_validator(mode="after")
    def _development_schedules(self) -> GatewaySettings:
        if self.environment == "development" and "min_schedule_interval" not in self.gateway.model_fields_set:
            self.gateway.min_schedule_interval = 60
        return self
