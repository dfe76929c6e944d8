-- Cheaper lookups and writes for the memory projector (docs/memory.md "Measured cost").

-- The candidates of a trace, which a decision of that trace may auto-promote: a lookup of
-- those alone rather than of every event of the trace (events_trace_id_idx) filtered by type.
-- Partial: the other events cost nothing to insert.
CREATE INDEX events_candidate_trace_idx ON events (trace_id) WHERE type = 'memory.candidate';

-- events_refs_idx without GIN's pending list: with it (the default), new entries wait in an
-- unsorted list that every lookup reads in full until a vacuum or an insert past
-- gin_pending_list_limit (4 MB) moves them into the index (that insert pays for all of them).
-- The projector looks up references in every batch, right after inserting the batch.
ALTER INDEX events_refs_idx SET (fastupdate = off);
SELECT gin_clean_pending_list('events_refs_idx'::regclass);

-- An entry's value is its candidate's payload.value, often near the size (2 kB) from which a
-- row is compressed: lz4 compresses several times faster than the default pglz, and the
-- consumer writes these values in the batch's transaction. Only the values written from now
-- on use it; a server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE memory_entries ALTER COLUMN value SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not supported by this server: memory_entries.value keeps pglz';
END
$$;
