"""Settings read once from the environment: one typed object, one place.

Every field is named after its environment variable (lower-cased). Defaults are the documented
ones; an invalid value fails at cold start with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from punk_records.errors import ConfigurationError

DEFAULT_TOPIC = "punk-records.events.v1"

# The functions, by the name their template resource starts with (IngestFunction, ...).
INGEST, CONSUMER, MIGRATE, QUERY, ADMIN = "Ingest", "Consumer", "Migrate", "Query", "Admin"


def read_by(*functions: str) -> Any:
    """Field metadata naming the functions that read a setting, so that the template can be
    checked against the code: each function declares exactly the variables it reads."""
    return Field(json_schema_extra={"read_by": list(functions)})


class Settings(BaseModel):
    """Configuration of both functions. See README "Configuration" for each variable."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # Kafka
    kafka_bootstrap_servers: Annotated[str, read_by(INGEST)] = ""
    kafka_topic: Annotated[str, read_by(INGEST)] = DEFAULT_TOPIC
    kafka_auth_mode: Annotated[Literal["none", "scram", "iam"], read_by(INGEST)] = "none"
    kafka_tls: Annotated[bool, read_by(INGEST)] = False
    kafka_scram_secret_arn: Annotated[str, read_by(INGEST)] = ""
    kafka_produce_timeout_ms: Annotated[int, read_by(INGEST)] = Field(
        default=10_000, ge=1_000, le=60_000
    )
    # Secret {"certificate": "<PEM>"} of a private root CA for self-managed brokers.
    kafka_ssl_ca_secret_arn: Annotated[str, read_by(INGEST)] = ""
    # Set by Lambda itself; no template declares it.
    aws_region: Annotated[str, read_by()] = "us-east-1"

    # PostgreSQL: a URL locally, an RDS-style JSON secret in AWS (the secret wins when set).
    # The ingest function reads them for its health check; the query function's point at its
    # read-only login.
    database_url: Annotated[str, read_by(INGEST, CONSUMER, MIGRATE, QUERY, ADMIN)] = ""
    database_secret_arn: Annotated[str, read_by(INGEST, CONSUMER, MIGRATE, QUERY, ADMIN)] = ""
    database_connect_timeout_s: Annotated[int, read_by(INGEST, CONSUMER, MIGRATE, QUERY, ADMIN)] = (
        Field(default=5, ge=1, le=60)
    )
    # An RDS Proxy endpoint to connect to instead of the secret's host (same credentials).
    database_proxy_endpoint: Annotated[str, read_by(INGEST, CONSUMER)] = ""
    # The query function's login (RDS-style secret): the migrate step creates it, SELECT only.
    query_database_secret_arn: Annotated[str, read_by(MIGRATE)] = ""

    # API tokens (docs/tokens.md): the JSON token set locally, the secret in AWS
    api_tokens: Annotated[str, read_by(INGEST, QUERY, ADMIN)] = ""
    api_tokens_secret_arn: Annotated[str, read_by(INGEST, QUERY, ADMIN)] = ""
    api_tokens_cache_s: Annotated[int, read_by(INGEST, QUERY, ADMIN)] = Field(
        default=60, ge=0, le=3_600
    )
    max_batch_events: Annotated[int, read_by(INGEST)] = Field(default=500, ge=1, le=10_000)
    max_body_bytes: Annotated[int, read_by(INGEST)] = Field(
        default=1_048_576, ge=1_024, le=6_000_000
    )
    max_payload_bytes: Annotated[int, read_by(INGEST, CONSUMER, ADMIN)] = Field(
        default=262_144, ge=1_024, le=6_000_000
    )
    max_record_bytes: Annotated[int, read_by(INGEST, CONSUMER)] = Field(
        default=1_048_576, ge=1_024, le=8_388_608
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _trim_servers(cls, value: str) -> str:
        """``"a:9092, b:9092"`` -> ``"a:9092,b:9092"``: spaces around entries are noise."""
        return ",".join(part.strip() for part in value.split(",") if part.strip())

    # Query API: the key that signs page cursors, the same in every container. A secret
    # {"key": "..."} in AWS, a string locally (the secret wins when set).
    cursor_key: Annotated[str, read_by(QUERY)] = ""
    cursor_key_secret_arn: Annotated[str, read_by(QUERY)] = ""

    # Governed memory (docs/memory.md): the auto-promotion thresholds, read where the
    # projection is computed (the consumer, and replay/redrive in the admin function).
    memory_auto_promote_confidence: Annotated[float, read_by(CONSUMER, ADMIN)] = Field(
        default=0.75, ge=0.0, le=1.0
    )
    memory_auto_promote_window_hours: Annotated[int, read_by(CONSUMER, ADMIN)] = Field(
        default=168, ge=1, le=8_760
    )
    memory_auto_promote_refs: Annotated[int, read_by(CONSUMER, ADMIN)] = Field(
        default=2, ge=1, le=100
    )

    @classmethod
    def variables_read_by(cls, function: str) -> set[str]:
        """The environment variables ``function`` (INGEST, CONSUMER, MIGRATE) reads."""
        found = set()
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            readers = extra.get("read_by") if isinstance(extra, dict) else None
            if isinstance(readers, list) and function in readers:
                found.add(name.upper())
        return found

    def require(self, field: str) -> str:
        """Return a string setting, or raise ConfigurationError naming its variable if unset."""
        value = str(getattr(self, field))
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
