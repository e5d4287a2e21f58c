-- Exact changes on a shared release: runs, per-customer leases, what every helm operation changed.

-- One row per execution ("run"): an upgrade's executions (the first, then one per resume: attempt 2, 3,
-- ...) and every rollback run. A run's stop_reason is the abort flag its customers check, under a share
-- lock, in the transaction that takes their lease; end_reason says why it ended when it did not end by
-- itself (reconciled after its execution failed, timed out or was stopped).
CREATE TABLE IF NOT EXISTS upgrade_runs (
  run_name VARCHAR(80) PRIMARY KEY,
  execution_name VARCHAR(80) NOT NULL,  -- the execution running it (an abort's rollback runs in the upgrade's)
  upgrade_id INT NOT NULL REFERENCES system_upgrades(id) ON DELETE CASCADE,
  kind VARCHAR(20) NOT NULL CHECK (kind IN ('upgrade', 'rollback')),
  scope VARCHAR(20) NOT NULL DEFAULT 'upgrade' CHECK (scope IN ('upgrade', 'customer', 'abort')),
  status VARCHAR(30) NOT NULL DEFAULT 'running',
  stop_reason TEXT,
  end_reason TEXT,
  attempt INT NOT NULL DEFAULT 1,
  requested_by VARCHAR(2048),
  created_at TIMESTAMP NOT NULL DEFAULT NOW(),
  ended_at TIMESTAMP,
  updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS upgrade_runs_by_upgrade ON upgrade_runs (upgrade_id, created_at);
CREATE INDEX IF NOT EXISTS upgrade_runs_running ON upgrade_runs (status) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS upgrade_runs_by_execution ON upgrade_runs (execution_name);

-- Runs recorded before this migration.
INSERT INTO upgrade_runs (run_name, execution_name, upgrade_id, kind, scope, status, requested_by, created_at,
                          ended_at)
SELECT u.execution_name, u.execution_name, u.id, 'upgrade', 'upgrade',
       CASE WHEN u.status IN ('pending', 'in_progress', 'awaiting_continue') THEN 'running' ELSE 'ended' END,
       u.requested_by, u.created_at, u.completed_at
  FROM system_upgrades u WHERE u.execution_name IS NOT NULL
ON CONFLICT (run_name) DO NOTHING;
INSERT INTO upgrade_runs (run_name, execution_name, upgrade_id, kind, scope, status, created_at)
SELECT l.run_name, regexp_replace(l.run_name, '-rollback$', ''), min(l.upgrade_id), 'rollback',
       CASE WHEN l.run_name LIKE 'rollback-%-all-%' THEN 'upgrade'
            WHEN l.run_name LIKE '%-rollback' THEN 'abort' ELSE 'customer' END,
       CASE WHEN bool_or(l.status IN ('pending', 'in_progress')) THEN 'running' ELSE 'ended' END,
       min(l.created_at)
  FROM customer_upgrade_logs l
 WHERE l.operation = 'rollback' AND l.run_name IS NOT NULL
 GROUP BY l.run_name
ON CONFLICT (run_name) DO NOTHING;

-- What every helm operation changed, read from the release itself (Helm's release record).
ALTER TABLE customer_upgrade_logs
  ADD COLUMN IF NOT EXISTS revision_before INT,
  ADD COLUMN IF NOT EXISTS revision_after INT,
  ADD COLUMN IF NOT EXISTS version_before VARCHAR(128),
  ADD COLUMN IF NOT EXISTS version_after VARCHAR(128),
  ADD COLUMN IF NOT EXISTS chart_version VARCHAR(128),
  ADD COLUMN IF NOT EXISTS rollback_of INT REFERENCES customer_upgrade_logs(id) ON DELETE CASCADE,
  ADD COLUMN IF NOT EXISTS waiting_for TEXT;
CREATE INDEX IF NOT EXISTS customer_upgrade_logs_by_customer
  ON customer_upgrade_logs (customer_id, component, id);
CREATE INDEX IF NOT EXISTS customer_upgrade_logs_rollback_of
  ON customer_upgrade_logs (rollback_of) WHERE rollback_of IS NOT NULL;

-- One helm operation per release at a time, across components, upgrades and rollbacks: taken before
-- a helm Job is created, given back in the transaction that records its result.
CREATE TABLE IF NOT EXISTS customer_leases (
  customer_id VARCHAR(63) PRIMARY KEY REFERENCES customers(id) ON DELETE CASCADE,
  log_id INT NOT NULL UNIQUE REFERENCES customer_upgrade_logs(id) ON DELETE CASCADE,
  upgrade_id INT NOT NULL,
  run_name VARCHAR(80) NOT NULL,
  operation VARCHAR(20) NOT NULL,
  component VARCHAR(50) NOT NULL,
  acquired_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS customer_leases_by_run ON customer_leases (run_name);

-- The chart version an upgrade pins (NULL: each release keeps the chart version it runs) and the
-- gate an upgrade waits at (approval: canary /continue; bake: a timed wait an abort can end).
ALTER TABLE system_upgrades
  ADD COLUMN IF NOT EXISTS chart_version VARCHAR(128),
  ADD COLUMN IF NOT EXISTS gate VARCHAR(20),
  ADD COLUMN IF NOT EXISTS gate_until TIMESTAMP;

-- What each release runs, as last read from the cluster.
ALTER TABLE customers
  ADD COLUMN IF NOT EXISTS chart_version VARCHAR(128),
  ADD COLUMN IF NOT EXISTS release_revision INT;
