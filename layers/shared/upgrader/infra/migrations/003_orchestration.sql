-- What orchestration needs on top of the specification's columns (all additive).
ALTER TABLE system_upgrades
  ADD COLUMN IF NOT EXISTS execution_name VARCHAR(80),
  ADD COLUMN IF NOT EXISTS task_token TEXT,
  ADD COLUMN IF NOT EXISTS requested_by VARCHAR(2048),
  ADD COLUMN IF NOT EXISTS parameters JSONB NOT NULL DEFAULT '{}'::jsonb,
  ADD COLUMN IF NOT EXISTS total_waves INT NOT NULL DEFAULT 1,
  ADD COLUMN IF NOT EXISTS current_wave INT,
  ADD COLUMN IF NOT EXISTS continued_at TIMESTAMP,
  ADD COLUMN IF NOT EXISTS continued_by VARCHAR(2048),
  ADD COLUMN IF NOT EXISTS halt_reason TEXT,
  ADD COLUMN IF NOT EXISTS updated_at TIMESTAMP NOT NULL DEFAULT NOW();

-- Versions follow the OCI tag grammar (up to 128 characters); the spec's 50 is too short for it.
ALTER TABLE system_upgrades ALTER COLUMN to_version TYPE VARCHAR(128);
ALTER TABLE system_upgrades ALTER COLUMN from_version TYPE VARCHAR(128);
ALTER TABLE customer_upgrade_logs ALTER COLUMN to_version TYPE VARCHAR(128);
ALTER TABLE customer_upgrade_logs ALTER COLUMN from_version TYPE VARCHAR(128);

ALTER TABLE customer_upgrade_logs
  ADD COLUMN IF NOT EXISTS operation VARCHAR(20) NOT NULL DEFAULT 'upgrade',
  ADD COLUMN IF NOT EXISTS run_name VARCHAR(80),
  ADD COLUMN IF NOT EXISTS wave INT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS attempt INT NOT NULL DEFAULT 1,
  ADD COLUMN IF NOT EXISTS namespace VARCHAR(63),
  ADD COLUMN IF NOT EXISTS release_name VARCHAR(53),
  ADD COLUMN IF NOT EXISTS job_name VARCHAR(63),
  ADD COLUMN IF NOT EXISTS requested_by VARCHAR(2048),
  ADD COLUMN IF NOT EXISTS created_at TIMESTAMP NOT NULL DEFAULT NOW(),
  ADD COLUMN IF NOT EXISTS updated_at TIMESTAMP NOT NULL DEFAULT NOW();

-- One upgrade of a component at a time: a second deploy loses this race with a unique violation (409).
CREATE UNIQUE INDEX IF NOT EXISTS system_upgrades_one_active_per_component
  ON system_upgrades (component)
  WHERE status IN ('pending', 'in_progress', 'awaiting_continue');

CREATE UNIQUE INDEX IF NOT EXISTS system_upgrades_execution_name
  ON system_upgrades (execution_name) WHERE execution_name IS NOT NULL;

-- One upgrade row per customer per upgrade; one open rollback per customer per upgrade.
CREATE UNIQUE INDEX IF NOT EXISTS customer_upgrade_logs_one_upgrade_row
  ON customer_upgrade_logs (upgrade_id, customer_id) WHERE operation = 'upgrade';
CREATE UNIQUE INDEX IF NOT EXISTS customer_upgrade_logs_one_open_rollback
  ON customer_upgrade_logs (upgrade_id, customer_id)
  WHERE operation = 'rollback' AND status IN ('pending', 'in_progress');

CREATE INDEX IF NOT EXISTS customer_upgrade_logs_by_upgrade
  ON customer_upgrade_logs (upgrade_id, wave, id);
CREATE INDEX IF NOT EXISTS customer_upgrade_logs_by_run
  ON customer_upgrade_logs (run_name, wave) WHERE run_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS system_upgrades_by_created
  ON system_upgrades (created_at DESC, id DESC);
