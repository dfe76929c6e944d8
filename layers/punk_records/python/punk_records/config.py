"""Settings read once from the environment: one typed object, one place.

Every field is named after its environment variable (lower-cased). Defaults are the documented
ones; an invalid value fails at cold start with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from punk_records.errors import ConfigurationError

DEFAULT_TOPIC = "punk-records.events.v1"


class Settings(BaseModel):
    """Configuration of both functions. See README "Configuration" for each variable."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # Kafka
    kafka_bootstrap_servers: str = ""
    kafka_topic: str = DEFAULT_TOPIC
    kafka_auth_mode: Literal["none", "scram", "iam"] = "none"
    kafka_tls: bool = False
    kafka_scram_secret_arn: str = ""
    kafka_produce_timeout_ms: int = Field(default=10_000, ge=1_000, le=60_000)
    # Secret {"certificate": "<PEM>"} of a private root CA for self-managed brokers.
    kafka_ssl_ca_secret_arn: str = ""
    aws_region: str = "us-east-1"

    # PostgreSQL: a URL locally, an RDS-style JSON secret in AWS (the secret wins when set)
    database_url: str = ""
    database_secret_arn: str = ""
    database_connect_timeout_s: int = Field(default=5, ge=1, le=60)
    # An RDS Proxy endpoint to connect to instead of the secret's host (same credentials).
    database_proxy_endpoint: str = ""

    # Ingest API
    api_tokens: str = ""
    api_tokens_secret_arn: str = ""
    api_tokens_cache_s: int = Field(default=60, ge=0, le=3_600)
    max_batch_events: int = Field(default=500, ge=1, le=10_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1_024, le=6_000_000)
    max_payload_bytes: int = Field(default=262_144, ge=1_024, le=6_000_000)
    max_record_bytes: int = Field(default=1_048_576, ge=1_024, le=8_388_608)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _trim_servers(cls, value: str) -> str:
        """``"a:9092, b:9092"`` -> ``"a:9092,b:9092"``: spaces around entries are noise."""
        return ",".join(part.strip() for part in value.split(",") if part.strip())

    def require(self, field: str) -> str:
        """Return a string setting, or raise ConfigurationError naming its variable if unset."""
        value = getattr(self, field)
        if not value:
            raise ConfigurationError(f"environment variable {field.upper()} is required")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); raise ConfigurationError."""
        environ = os.environ if environ is None else environ
        names = cls.model_fields.keys()
        values = {name: environ[name.upper()] for name in names if name.upper() in environ}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigurationError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The container's settings, read once. Tests call ``get_settings.cache_clear()``."""
    return Settings.from_env()
