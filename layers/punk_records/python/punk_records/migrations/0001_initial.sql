-- Events, exactly once per event_id, with the Kafka coordinates they came from.
CREATE TABLE events (
    event_id        uuid PRIMARY KEY,
    ts              timestamptz NOT NULL,
    workspace_id    text NOT NULL,
    satellite_id    text NOT NULL,
    trace_id        uuid NOT NULL,
    type            text NOT NULL,
    severity        text NOT NULL,
    confidence      double precision NOT NULL,
    payload_json    jsonb NOT NULL DEFAULT '{}'::jsonb,
    kafka_topic     text,
    kafka_partition integer,
    kafka_offset    bigint,
    received_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_workspace_ts_idx ON events (workspace_id, ts);
CREATE INDEX events_workspace_type_ts_idx ON events (workspace_id, type, ts);
CREATE INDEX events_trace_id_idx ON events (trace_id);

-- Records that can never become an event: kept byte for byte with the reason.
CREATE TABLE dead_letters (
    id              bigserial PRIMARY KEY,
    raw_value       bytea,
    raw_key         bytea,
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    error           text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kafka_topic, kafka_partition, kafka_offset)
);
