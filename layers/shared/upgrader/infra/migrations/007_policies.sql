-- Roll-out policies: version compatibility rules, maintenance window waits. (Progressive steps and
-- window settings live in system_upgrades.parameters.)

-- Compatibility rules, compared as versions by the code (packaging), never by SQL.
--   requires:     customers whose `component` is in `versions` must run `requires_component` in `requires_versions`
--   upgrade_from: moving `component` to a version in `versions` needs its current version in `requires_versions`
CREATE TABLE IF NOT EXISTS compatibility_rules (
  id SERIAL PRIMARY KEY,
  component VARCHAR(50) NOT NULL,
  versions VARCHAR(200) NOT NULL,
  kind VARCHAR(20) NOT NULL CHECK (kind IN ('requires', 'upgrade_from')),
  requires_component VARCHAR(50),
  requires_versions VARCHAR(200) NOT NULL,
  reason TEXT,
  created_by VARCHAR(2048),
  created_at TIMESTAMP NOT NULL DEFAULT NOW(),
  CHECK ((kind = 'requires') = (requires_component IS NOT NULL))
);

-- Maintenance windows: when a pending customer's window next opens (with room for the expected helm
-- duration) while its child execution waits for it in a Step Functions Wait state; NULL otherwise.
ALTER TABLE customer_upgrade_logs ADD COLUMN IF NOT EXISTS window_opens_at TIMESTAMP;
CREATE INDEX IF NOT EXISTS customer_upgrade_logs_waiting_for_window
  ON customer_upgrade_logs (upgrade_id, window_opens_at) WHERE window_opens_at IS NOT NULL;
