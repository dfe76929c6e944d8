-- The read API (GET /events, GET /events/{event_id}, GET /dead-letters): keyset indexes and a
-- role that can only SELECT.

-- Pages are ordered by (ts, event_id) inside one workspace. With event_id in the index, the
-- order, the filters and the "after the cursor" row comparison are all one index range scan
-- that stops after one page. They cover the (workspace_id, ts) and (workspace_id, type, ts)
-- indexes of 0001, which stay: migrations are expand-only (docs/deploy.md), and dropping them
-- is a deliberate change for when no deployed code plans with them.
CREATE INDEX events_workspace_ts_id_idx ON events (workspace_id, ts, event_id);
CREATE INDEX events_workspace_type_ts_id_idx ON events (workspace_id, type, ts, event_id);
CREATE INDEX events_workspace_satellite_ts_id_idx
    ON events (workspace_id, satellite_id, ts, event_id);

-- Dead letters are paged by (received_at, id), optionally for one topic.
CREATE INDEX dead_letters_received_id_idx ON dead_letters (received_at, id);
CREATE INDEX dead_letters_topic_received_id_idx ON dead_letters (kafka_topic, received_at, id);

-- The query function logs in as a member of this group role (its login role and password are
-- set by the migrate step from the query function's own secret): SELECT on these two tables
-- and nothing else. Roles are cluster-wide, so another database may have created it already.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'punk_records_reader') THEN
        CREATE ROLE punk_records_reader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO punk_records_reader', current_schema());
    -- Before PostgreSQL 15 every role may create tables in the public schema. Take that away
    -- when we own the schema (where we do not, e.g. an RDS master user on 14, the owner
    -- should: docs/query.md); from 15 on it is already the default.
    IF pg_has_role(
        (SELECT nspowner FROM pg_namespace WHERE nspname = current_schema()), 'USAGE'
    ) THEN
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    END IF;
END $$;
GRANT SELECT ON events, dead_letters TO punk_records_reader;
