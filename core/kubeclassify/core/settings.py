"""Settings shared by every component, read from `KUBECLASSIFY_*` environment variables.

Each component extends `Settings` with its own fields. Secret fields may carry a development
default (see `development_secret`); outside `environment=development` such a default is refused
at start-up, naming the variable to set.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "KUBECLASSIFY_"
_DEV_PREFIX = "insecure-development-"


def development_secret(name: str) -> SecretStr:
    """A well-known secret that is accepted only in development."""
    return SecretStr(f"{_DEV_PREFIX}{name}")


class S3Settings(BaseModel):
    """Object-storage access; credentials fall back to boto3's usual chain when unset."""

    endpoint_url: str | None = Field(None, description="S3 endpoint (MinIO, SeaweedFS...); AWS when unset.")
    region: str = Field("us-east-1", description="S3 region.")
    access_key_id: str | None = Field(None, description="Access key id.")
    secret_access_key: SecretStr | None = Field(None, description="Secret access key.")
    max_attempts: int = Field(5, ge=1, le=20, description="Attempts per request (throttling and 5xx).")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect.")
    read_timeout: float = Field(60.0, gt=0, description="Seconds to wait for data.")
    max_pool_connections: int = Field(64, ge=1, description="Concurrent connections per client.")

    def to_env(self) -> dict[str, str]:
        """These settings as the `KUBECLASSIFY_S3__*` variables of a child process."""
        out = {}
        for name in type(self).model_fields:
            value: Any = getattr(self, name)
            if value is not None:
                text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
                out[f"{ENV_PREFIX}S3__{name.upper()}"] = text
        return out


class Settings(BaseSettings):
    """The settings every component reads."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "production", description="development accepts the built-in development secrets."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["json", "text"] = Field("json", description="json for machines, text for people.")
    s3: S3Settings = Field(default_factory=S3Settings, description="Object storage.")

    @model_validator(mode="after")
    def _refuse_development_secrets(self) -> Settings:
        if self.environment == "development":
            return self
        found = [name for name, value in _secrets(self, ENV_PREFIX) if value.startswith(_DEV_PREFIX)]
        if found:
            raise ValueError(
                f"{', '.join(found)} still has its development default: set a real secret, or set"
                f" {ENV_PREFIX}ENVIRONMENT=development"
            )
        return self


def _secrets(model: BaseModel, prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in type(model).model_fields:
        value: Any = getattr(model, name)
        env = f"{prefix}{name.upper()}"
        if isinstance(value, SecretStr):
            out.append((env, value.get_secret_value()))
        elif isinstance(value, BaseModel):
            out.extend(_secrets(value, env + "__"))
    return out
