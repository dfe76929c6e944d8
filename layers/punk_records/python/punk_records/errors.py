"""Error hierarchy of punk_records: every error says whether retrying can help."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


class PunkRecordsError(Exception):
    """Base class. ``retriable`` tells callers whether the same input may succeed later."""

    retriable: ClassVar[bool] = False


class ConfigurationError(PunkRecordsError):
    """A setting is missing or invalid; the message names the environment variable."""


class InvalidEnvelope(PunkRecordsError):
    """One or more envelopes broke the contract. ``errors`` is a list of ``{loc, msg, type}``."""

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} validation error(s)")


class ProduceError(PunkRecordsError):
    """Kafka did not acknowledge every record in time. ``not_acked`` lists their event ids."""

    retriable = True

    def __init__(self, message: str, not_acked: Sequence[str]) -> None:
        self.not_acked = list(not_acked)
        super().__init__(message)


class StoreUnavailable(PunkRecordsError):
    """PostgreSQL could not be reached or the transaction failed for a transient reason."""

    retriable = True


class SecretUnavailable(PunkRecordsError):
    """A secret (API tokens, database credentials) could not be read."""

    retriable = True
