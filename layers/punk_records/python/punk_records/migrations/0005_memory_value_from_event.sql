-- An entry's value is its candidate's payload.value, which never changes: the readers take it
-- from the event (one primary-key lookup per entry shown) rather than from a copy. The copy
-- cost the consumer a read, a compression and a write of every value (7 of its 11 ms for the
-- 1,214 entries of the benchmark's 10,000-record batch) and doubled their storage.
ALTER TABLE memory_entries DROP COLUMN value;
