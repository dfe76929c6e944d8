"""A private root CA for self-managed Kafka brokers: from its secret to the file kafka-python reads.

The event source mapping takes the same secret as ``SERVER_ROOT_CA_CERTIFICATE``, whose format
is ``{"certificate": "<PEM>"}``; the producer needs the PEM as a file (``ssl_cafile``).
"""

from __future__ import annotations

import hashlib
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from punk_records.aws_secrets import read_json_secret
from punk_records.config import Settings
from punk_records.errors import ConfigurationError


def server_ca_options(settings: Settings) -> dict[str, Any]:
    """``{"ssl_cafile": path}`` when a root-CA secret is configured, else ``{}``."""
    if not settings.kafka_ssl_ca_secret_arn:
        return {}
    return {"ssl_cafile": ca_file(settings.kafka_ssl_ca_secret_arn)}


@lru_cache(maxsize=4)
def ca_file(arn: str) -> str:
    """Write the secret's PEM to a file in the temp directory once; raise ConfigurationError
    when the secret has no PEM ``certificate`` (SecretUnavailable when it cannot be read)."""
    pem = read_json_secret(arn).get("certificate")
    if not isinstance(pem, str) or "-----BEGIN CERTIFICATE-----" not in pem:
        raise ConfigurationError(f'secret {arn} has no PEM "certificate" field')
    name = hashlib.sha256(arn.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"punk-records-kafka-ca-{name}.pem"
    path.write_text(pem, encoding="ascii")
    return str(path)
