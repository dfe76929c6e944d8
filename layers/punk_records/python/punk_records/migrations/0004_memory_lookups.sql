-- Cheaper lookups for the memory projector (docs/memory.md "What it costs").

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
