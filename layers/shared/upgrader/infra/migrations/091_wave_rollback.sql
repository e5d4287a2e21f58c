-- An analysis fail with autoRollback rolls back only the failed wave's customers (issue 20, docs/analysis.md):
-- its rollback run has scope 'wave' and says which wave (0-based, as customer_upgrade_logs.wave). Re-runnable.
ALTER TABLE upgrade_runs ADD COLUMN IF NOT EXISTS wave INT;
ALTER TABLE upgrade_runs DROP CONSTRAINT IF EXISTS upgrade_runs_scope_check;
ALTER TABLE upgrade_runs ADD CONSTRAINT upgrade_runs_scope_check
  CHECK (scope IN ('upgrade', 'customer', 'abort', 'wave'));
