-- The projection stops writing what it can read from elsewhere (docs/memory.md "Measured
-- cost"): the consumer wrote both copies in every batch's transaction. Expand-only, like
-- every migration: code still running during a deploy keeps its tables and columns.

-- An entry's "created" audit row says nothing its entry does not (its id, workspace,
-- created_at and satellite). memory_trail is the whole audit trail: the rows stored in
-- memory_history but "created" ones, which code from now on no longer writes (older code may,
-- until it is replaced; they are ignored), and a "created" row derived from each entry.
CREATE VIEW memory_trail AS
SELECT entry_id, event_id, workspace_id, action, from_status, to_status, at, satellite_id,
       reason
FROM memory_history
WHERE action <> 'created'
UNION ALL
SELECT entry_id, entry_id, workspace_id, 'created'::text, NULL::text, 'candidate'::text,
       created_at, satellite_id, NULL::text
FROM memory_entries;

GRANT SELECT ON memory_trail TO punk_records_reader;

-- memory_entries.value is no longer written either (its default, {}, fills it): an entry's
-- value is its candidate's payload.value, which never changes, and the readers take it from
-- the event. Both leftovers can go once no deployed code reads them.
