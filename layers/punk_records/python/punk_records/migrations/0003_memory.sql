-- Governed memory (docs/memory.md): the projection of memory.* events and its audit trail,
-- the indexes the projector's lookups need, and what dead-letter redrive records.

-- One row per entry; entry_id is the event_id of its memory.candidate. Keys sort bytewise
-- (COLLATE "C") so that a key-prefix filter is an index range scan.
CREATE TABLE memory_entries (
    entry_id      uuid PRIMARY KEY,
    workspace_id  text NOT NULL,
    key           text COLLATE "C" NOT NULL,
    value         jsonb NOT NULL DEFAULT '{}'::jsonb,
    bucket        text NOT NULL CHECK (bucket IN ('global', 'workspace', 'ephemeral')),
    status        text NOT NULL CHECK (status IN ('candidate', 'promoted', 'retracted')),
    confidence    double precision NOT NULL,
    trace_id      uuid NOT NULL,
    satellite_id  text NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    -- The last event that changed the entry.
    last_event_id uuid NOT NULL
);
-- GET /memory pages by (key, entry_id) inside one workspace.
CREATE INDEX memory_entries_workspace_key_idx ON memory_entries (workspace_id, key, entry_id);

-- The audit trail: what each event did to each entry, once per (entry_id, event_id), so a
-- redelivered event adds nothing. "at" is the event's ts, so the trail is as deterministic as
-- the entries. An invalid promotion/retraction is keyed by its own event_id.
CREATE TABLE memory_history (
    entry_id     uuid NOT NULL,
    event_id     uuid NOT NULL,
    workspace_id text NOT NULL,
    action       text NOT NULL
        CHECK (action IN ('created', 'promoted', 'retracted', 'refused', 'invalid')),
    from_status  text,
    to_status    text,
    at           timestamptz NOT NULL,
    satellite_id text NOT NULL,
    reason       text,
    PRIMARY KEY (entry_id, event_id)
);
CREATE INDEX memory_history_workspace_idx ON memory_history (workspace_id, entry_id);

-- The projector finds an entry's promotions/retractions by the entry_id in their payload, and
-- the events that reference it by payload.refs. Both indexes are partial: the other events
-- (most of them) cost nothing to insert. Decisions of a trace use events_trace_id_idx.
CREATE INDEX events_memory_change_idx ON events ((lower(payload_json ->> 'entry_id')))
    WHERE type IN ('memory.promoted', 'memory.retracted');
CREATE INDEX events_refs_idx ON events USING gin ((payload_json -> 'refs'))
    WHERE payload_json ? 'refs';

-- Redrive: when a dead letter became an event again, and which.
ALTER TABLE dead_letters
    ADD COLUMN redriven_at timestamptz,
    ADD COLUMN redriven_event_id uuid;

-- The query function's read-only role (migration 0002) reads memory too.
GRANT SELECT ON memory_entries, memory_history TO punk_records_reader;
