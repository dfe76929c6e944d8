"""A local Lambda event source mapping for Kafka: polls a topic, invokes a function per batch."""

from __future__ import annotations

import argparse
import base64
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from local.invoker import FunctionError, Invoke, emulated
from local.template import TEMPLATE, TemplateError, load_template

if TYPE_CHECKING:
    from kafka import KafkaConsumer
    from kafka.consumer.fetcher import ConsumerRecord
    from kafka.structs import TopicPartition

log = logging.getLogger("local.esm")

# The ESM's documented defaults for Kafka (and the template's).
DEFAULT_BATCH_SIZE = 100
DEFAULT_WINDOW_MS = 500
DEFAULT_GROUP_ID = "punk-records-consumer"
# A batch is also sent when its payload reaches 6 MB (Lambda's invocation payload limit).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024

_TIMESTAMP_TYPES = {0: "CREATE_TIME", 1: "LOG_APPEND_TIME"}
_IDLE_POLL_MS = 200


@dataclass(frozen=True, slots=True)
class MappingSettings:
    """The consumer's event source mapping as the template declares it (parameter defaults)."""

    group_id: str = DEFAULT_GROUP_ID
    starting_position: str = "TRIM_HORIZON"
    batch_size: int = DEFAULT_BATCH_SIZE
    window_ms: int = DEFAULT_WINDOW_MS


def mapping_settings(template: Path = TEMPLATE) -> MappingSettings:
    """Read the self-managed Kafka mapping of ``template``; Lambda's defaults for what is unset."""
    data = load_template(template)
    parameters = data.get("Parameters") or {}

    def value(raw: Any) -> Any:
        if isinstance(raw, dict) and set(raw) == {"Ref"}:
            return parameters[raw["Ref"]]["Default"]
        return raw

    props = next(
        (
            res.get("Properties") or {}
            for res in (data.get("Resources") or {}).values()
            if res.get("Type") == "AWS::Lambda::EventSourceMapping"
            and "SelfManagedEventSource" in (res.get("Properties") or {})
        ),
        None,
    )
    if props is None:
        raise TemplateError(f"{template} has no self-managed Kafka event source mapping")
    defaults = MappingSettings()
    config = props.get("SelfManagedKafkaEventSourceConfig") or {}
    window = props.get("MaximumBatchingWindowInSeconds")
    return MappingSettings(
        group_id=str(value(config.get("ConsumerGroupId", defaults.group_id))),
        starting_position=str(value(props.get("StartingPosition", defaults.starting_position))),
        batch_size=int(value(props.get("BatchSize", defaults.batch_size))),
        window_ms=defaults.window_ms if window is None else int(value(window)) * 1000,
    )


@dataclass(frozen=True, slots=True)
class EsmConfig:
    """The event source mapping's settings, named after the template's properties."""

    bootstrap_servers: str
    topic: str
    group_id: str = DEFAULT_GROUP_ID
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    batch_size: int = DEFAULT_BATCH_SIZE
    window_ms: int = DEFAULT_WINDOW_MS
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0


class InvalidBatchResponse(Exception):
    """The partial batch response names a record that was not in the batch: retry it all."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def record_entry(record: ConsumerRecord) -> dict[str, Any]:
    """One record as the ESM puts it in the event (base64 key/value, headers as byte lists)."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestampType": _TIMESTAMP_TYPES.get(record.timestamp_type, "CREATE_TIME"),
        "key": None if record.key is None else _b64(record.key),
        "value": None if record.value is None else _b64(record.value),
        "headers": [{name: list(value or b"")} for name, value in record.headers],
    }


def build_event(records: Sequence[ConsumerRecord], bootstrap_servers: str) -> dict[str, Any]:
    """The ``SelfManagedKafka`` event for ``records``, grouped under ``"<topic>-<partition>"``."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(f"{record.topic}-{record.partition}", []).append(record_entry(record))
    return {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": bootstrap_servers,
        "records": grouped,
    }


def _entry_size(record: ConsumerRecord) -> int:
    """Approximate bytes ``record`` adds to the JSON event (base64 grows data by 4/3)."""
    raw = max(record.serialized_value_size or 0, 0) + max(record.serialized_key_size or 0, 0)
    return raw * 4 // 3 + 4 * max(record.serialized_header_size or 0, 0) + 200


def failed_offsets(result: Any, records: Sequence[ConsumerRecord]) -> dict[tuple[str, int], int]:
    """First failed offset per (topic, partition) named by a partial batch response.

    ``None``, an empty response, or one without ``batchItemFailures`` means the whole batch
    succeeded. Raise InvalidBatchResponse when an identifier is missing or names a record that
    was not in the batch: Lambda then treats the entire batch as failed.
    """
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return {}
    present = {(f"{r.topic}-{r.partition}", r.offset): (r.topic, r.partition) for r in records}
    failed: dict[tuple[str, int], int] = {}
    for item in result["batchItemFailures"]:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, dict):
            raise InvalidBatchResponse(f"batch item failure without an itemIdentifier: {item!r}")
        key = (ident.get("partition"), ident.get("offset"))
        if key not in present:
            raise InvalidBatchResponse(f"itemIdentifier not in the batch: {ident!r}")
        tp = present[key]
        failed[tp] = min(failed.get(tp, key[1]), key[1])
    return failed


def rewind(consumer: KafkaConsumer, batch: Sequence[ConsumerRecord]) -> None:
    """Seek each partition of an undelivered ``batch`` that is still assigned back to the
    batch's first record. A rebalance that hands a member its own partitions back keeps their
    positions, past the dropped batch: without this, its records would never be delivered."""
    from kafka.structs import TopicPartition

    first: dict[tuple[str, int], int] = {}
    for r in batch:
        key = (r.topic, r.partition)
        first[key] = min(first.get(key, r.offset), r.offset)
    assigned = consumer.assignment()
    for (topic, partition), offset in first.items():
        tp = TopicPartition(topic, partition)
        if tp in assigned:
            consumer.seek(tp, offset)


def describe(records: Sequence[ConsumerRecord]) -> str:
    """``topic-0:10..59,topic-1:3..3``: the offset range per partition, for the batch log line."""
    ranges: dict[str, list[int]] = {}
    for r in records:
        span = ranges.setdefault(f"{r.topic}-{r.partition}", [r.offset, r.offset])
        span[0], span[1] = min(span[0], r.offset), max(span[1], r.offset)
    return ",".join(f"{key}:{lo}..{hi}" for key, (lo, hi) in ranges.items())


class KafkaEventSourceMapping:
    """Polls ``config.topic`` as consumer group ``config.group_id`` and invokes the function.

    Semantics follow Lambda's Kafka ESM: a batch closes at ``batch_size`` records, after
    ``window_ms``, or at 6 MB; offsets are committed only after the function succeeded; a
    partial batch response commits up to the first failed record of each partition and
    re-reads from there; a function error retries the same batch with capped exponential
    backoff, so no record is ever skipped. One batch is in flight at a time, which keeps
    per-partition order (a failing batch holds back every partition, not only its own).
    """

    def __init__(
        self,
        config: EsmConfig,
        invoke: Invoke,
        consumer_factory: Callable[[EsmConfig], KafkaConsumer] | None = None,
    ) -> None:
        self.config = config
        self._invoke = invoke
        self._consumer_factory = consumer_factory or _kafka_consumer
        self.assigned = threading.Event()
        self._generation = 0
        self._failures = 0

    # -- consumer group callbacks (called from inside poll) --
    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self._generation += 1  # an in-flight batch for these partitions is no longer ours
            log.info("partitions revoked: %s", _tps(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", _tps(assigned))
        if assigned:
            self.assigned.set()

    def run(self, stop: threading.Event) -> None:
        """Poll, batch and invoke until ``stop`` is set; uncommitted records are re-read later."""
        from kafka import ConsumerRebalanceListener

        mapping = self

        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
                mapping.on_partitions_revoked(revoked)

            def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
                mapping.on_partitions_assigned(assigned)

        from kafka.errors import KafkaError

        while not stop.is_set():
            consumer: KafkaConsumer | None = None
            try:
                # Inside the try: with the broker down, the constructor itself raises
                # ("Unable to bootstrap"), and that must not end the poller either.
                consumer = self._consumer_factory(self.config)
                consumer.subscribe([self.config.topic], listener=_Listener())
                while not stop.is_set():
                    generation = self._generation
                    batch = self._collect(consumer, stop)
                    if batch:
                        self._deliver(consumer, batch, generation, stop)
            except KafkaError as exc:
                # Lambda's pollers outlive a broker restart; so does this one. What was not
                # committed is read again by the fresh consumer.
                self._generation += 1
                log.warning(
                    "consumer failed (%s: %s); reconnecting in %.1fs",
                    type(exc).__name__,
                    exc,
                    self.config.retry_initial_s,
                )
                stop.wait(self.config.retry_initial_s)
            finally:
                if consumer is not None:
                    consumer.close(autocommit=False)

    def _collect(self, consumer: KafkaConsumer, stop: threading.Event) -> list[ConsumerRecord]:
        """Poll until the batch is full, its window has passed, or it reaches 6 MB."""
        batch: list[ConsumerRecord] = []
        size = 0
        deadline: float | None = None
        while not stop.is_set():
            wait_ms = (
                _IDLE_POLL_MS
                if deadline is None
                else max(0, int((deadline - time.monotonic()) * 1000))
            )
            polled = consumer.poll(
                timeout_ms=wait_ms, max_records=self.config.batch_size - len(batch)
            )
            for tp, records in polled.items():
                for record in records:
                    added = _entry_size(record)
                    if batch and size + added > MAX_PAYLOAD_BYTES:
                        # Leave the rest of this partition for the next batch.
                        consumer.seek(tp, record.offset)
                        deadline = 0.0
                        break
                    batch.append(record)
                    size += added
            if batch and deadline is None:
                deadline = time.monotonic() + self.config.window_ms / 1000
            if len(batch) >= self.config.batch_size or (
                deadline is not None and time.monotonic() >= deadline
            ):
                break
        return batch

    def _deliver(
        self,
        consumer: KafkaConsumer,
        batch: list[ConsumerRecord],
        generation: int,
        stop: threading.Event,
    ) -> None:
        """Invoke until the batch succeeds (fully or partially); then commit what succeeded."""
        from kafka.structs import OffsetAndMetadata, TopicPartition

        event = build_event(batch, self.config.bootstrap_servers)
        attempt = 0
        while not stop.is_set():
            if generation != self._generation:
                rewind(consumer, batch)
                log.info(
                    "batch %s dropped: partitions were reassigned; what stays ours is re-read",
                    describe(batch),
                )
                return
            attempt += 1
            started = time.monotonic()
            try:
                failed = failed_offsets(self._invoke(event), batch)
            except (FunctionError, InvalidBatchResponse) as exc:
                self._failures += 1
                delay = self._delay()
                self._log_batch(batch, started, attempt, f"error retry_in={delay:.1f}s ({exc})")
                self._backoff(consumer, delay, stop)
                continue
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            for r in batch:
                tp = (r.topic, r.partition)
                next_offset = failed.get(tp, r.offset + 1)
                if r.offset < next_offset:
                    offsets[TopicPartition(*tp)] = OffsetAndMetadata(next_offset, "", -1)
            self._commit(consumer, offsets)
            if failed:
                for (topic, partition), offset in failed.items():
                    consumer.seek(TopicPartition(topic, partition), offset)
                self._failures += 1
                delay = self._delay()
                retry = ",".join(f"{t}-{p}@{o}" for (t, p), o in failed.items())
                self._log_batch(batch, started, attempt, f"partial retry={retry} in={delay:.1f}s")
                self._backoff(consumer, delay, stop)
            else:
                self._failures = 0
                self._log_batch(batch, started, attempt, "ok")
            return

    def _delay(self) -> float:
        exponent = min(self._failures - 1, 30)
        return min(self.config.retry_max_s, self.config.retry_initial_s * 2**exponent)

    def _commit(self, consumer: KafkaConsumer, offsets: dict) -> None:
        from kafka.errors import KafkaError

        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except KafkaError as exc:
            # Not fatal: the records are re-read and the function absorbs the duplicates.
            log.warning("offset commit failed (%s: %s)", type(exc).__name__, exc)

    def _backoff(self, consumer: KafkaConsumer, delay: float, stop: threading.Event) -> None:
        """Wait ``delay`` seconds while staying in the group (paused polls keep it alive)."""
        paused = consumer.assignment()
        consumer.pause(*paused)
        try:
            deadline = time.monotonic() + delay
            while not stop.is_set() and time.monotonic() < deadline:
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                consumer.poll(timeout_ms=max(1, min(remaining_ms, _IDLE_POLL_MS)))
        finally:
            consumer.resume(*(tp for tp in paused if tp in consumer.assignment()))

    def _log_batch(
        self, batch: Sequence[ConsumerRecord], started: float, attempt: int, outcome: str
    ) -> None:
        log.info(
            "batch records=%d partitions=%s attempt=%d duration_ms=%d outcome=%s",
            len(batch),
            describe(batch),
            attempt,
            (time.monotonic() - started) * 1000,
            outcome,
        )


def _tps(tps: set[TopicPartition]) -> str:
    return ",".join(sorted(f"{tp.topic}-{tp.partition}" for tp in tps)) or "none"


def _kafka_consumer(config: EsmConfig) -> KafkaConsumer:
    from kafka import KafkaConsumer

    return KafkaConsumer(
        bootstrap_servers=config.bootstrap_servers.split(","),
        group_id=config.group_id,
        # Static membership: a poller restarted after a crash takes its partitions back at once
        # instead of waiting for the dead member's session to expire.
        group_instance_id=f"{config.group_id}-local-0",
        session_timeout_ms=10_000,
        client_id="punk-records-local-esm",
        enable_auto_commit=False,
        auto_offset_reset="earliest" if config.starting_position == "TRIM_HORIZON" else "latest",
        max_poll_records=config.batch_size,
    )


# ---------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mapping for a function under the emulator until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m local.esm", description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group-id", default=DEFAULT_GROUP_ID)
    parser.add_argument(
        "--starting-position", choices=["TRIM_HORIZON", "LATEST"], default="TRIM_HORIZON"
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--window-ms", type=int, default=DEFAULT_WINDOW_MS)
    parser.add_argument("--retry-max-s", type=float, default=10.0)
    parser.add_argument("--function", default="ConsumerFunction", help="template logical id")
    parser.add_argument("--env-vars", type=Path, help="env file in the sam --env-vars format")
    parser.add_argument("--ready-file", type=Path, help="touched once partitions are assigned")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not 1 <= args.batch_size <= 10_000:
        parser.error("--batch-size must be between 1 and 10000")

    config = EsmConfig(
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        group_id=args.group_id,
        starting_position=args.starting_position,
        batch_size=args.batch_size,
        window_ms=args.window_ms,
        retry_max_s=args.retry_max_s,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with emulated(args.function, env_vars=args.env_vars) as (invoke,):
        mapping = KafkaEventSourceMapping(config, invoke)
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
            threading.Thread(
                target=_touch_when_assigned, args=(mapping, args.ready_file, stop), daemon=True
            ).start()
        log.info(
            "polling %s as group %s for %s (pid %d)",
            config.topic,
            config.group_id,
            args.function,
            os.getpid(),
        )
        try:
            mapping.run(stop)
        finally:
            if args.ready_file is not None:
                args.ready_file.unlink(missing_ok=True)
    log.info("stopped")
    return 0


def _touch_when_assigned(
    mapping: KafkaEventSourceMapping, path: Path, stop: threading.Event
) -> None:
    while not stop.is_set():
        if mapping.assigned.wait(timeout=0.5):
            path.touch()
            return


if __name__ == "__main__":
    sys.exit(main())
