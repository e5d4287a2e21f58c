-- How long each helm operation ran (the Job's own startTime to completionTime, a second's resolution):
-- a customer's first look at its running Job waits the component's typical duration (the median of
-- its recent successful attempts) instead of polling from the start.
ALTER TABLE customer_upgrade_logs ADD COLUMN IF NOT EXISTS helm_seconds REAL;
CREATE INDEX IF NOT EXISTS customer_upgrade_logs_helm_durations
  ON customer_upgrade_logs (component, operation, id DESC) WHERE helm_seconds IS NOT NULL;

-- An upgrade's rollback rows (a fleet-wide rollback counts each customer's earlier ones, and checks
-- which were rolled back already): found by upgrade and customer, not by scanning the upgrade's rows.
CREATE INDEX IF NOT EXISTS customer_upgrade_logs_rollbacks
  ON customer_upgrade_logs (upgrade_id, customer_id) WHERE operation = 'rollback';
