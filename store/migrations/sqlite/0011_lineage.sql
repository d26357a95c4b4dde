-- Instance lineage and counters checked against `[limits]`: the workflows of every
-- instance above this one in its chain of starts (a JSON array, root first), how many
-- instances this one has started, how many history rows it has, and whether it is (1)
-- detached (`on_parent_cancel: abandon`: not cancelled with its parent).
-- Rows written before this migration count from zero and as roots of their own chain.
ALTER TABLE instances ADD COLUMN ancestors TEXT NOT NULL DEFAULT '[]';
ALTER TABLE instances ADD COLUMN children_started BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN history_rows BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN detached BIGINT NOT NULL DEFAULT 0;
