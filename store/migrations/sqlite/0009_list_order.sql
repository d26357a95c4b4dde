-- The unfiltered lists of instances and of the outbox read newest first
-- (ORDER BY created_at DESC, id DESC): an index in that order serves them without a
-- full scan and sort.
CREATE INDEX instances_created ON instances (created_at, id);
CREATE INDEX outbox_created ON outbox (created_at, id);
