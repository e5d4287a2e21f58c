-- Release trains (issue 21 item 3, docs/rings.md "Trains"): one upgrade sets several components of a customer's
-- release in one helm operation. A train's log row keeps its columns for its first component (component,
-- from_version, to_version: every existing query keeps working) and, in `components`, every component of the
-- train: {"api": {"from": "v1.0.3", "to": "v2.0.0", "before": ..., "after": ...}, "dashboard": {...}}.
-- `from`/`to` are what the deploy planned (for a rollback row: what it restores); `before`/`after` are read from
-- the release right before helm and right after it. NULL on a single-component row.
ALTER TABLE customer_upgrade_logs ADD COLUMN IF NOT EXISTS components JSONB
    CHECK (components IS NULL OR jsonb_typeof(components) = 'object');

-- The upgrade's own list of the components it sets (NULL: only `component`). One active upgrade per component is
-- kept by system_upgrades_one_active_per_component for the first component, and for the others by the deploy's
-- transaction (an advisory lock per component, then a look at the active upgrades: upgrade_repository).
ALTER TABLE system_upgrades ADD COLUMN IF NOT EXISTS components TEXT[];
CREATE INDEX IF NOT EXISTS system_upgrades_active_trains ON system_upgrades USING gin (components)
    WHERE components IS NOT NULL AND status IN ('pending', 'in_progress', 'awaiting_continue');

-- The promotion evidence of a component's version counts the trains that carried it (`components @> ...`).
CREATE INDEX IF NOT EXISTS customer_upgrade_logs_trains ON customer_upgrade_logs USING gin (components jsonb_path_ops)
    WHERE components IS NOT NULL;
