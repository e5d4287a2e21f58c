-- The fleet as it really is: discovery from the cluster, drift, pins, history, idempotent deploys.

-- What discovery knows of each customer (the cluster is the truth about what runs).
ALTER TABLE customers
  ADD COLUMN IF NOT EXISTS discovered_at TIMESTAMP,
  ADD COLUMN IF NOT EXISTS last_seen_at TIMESTAMP,
  ADD COLUMN IF NOT EXISTS last_seen_sync_id INT,
  ADD COLUMN IF NOT EXISTS decommissioned_at TIMESTAMP,
  -- Where the inventory and the release disagreed: {component: {recorded, release, detectedAt}};
  -- NULL when none. Kept until acknowledged (PATCH acknowledgeDrift), its events in customer_events.
  ADD COLUMN IF NOT EXISTS drift JSONB,
  ADD COLUMN IF NOT EXISTS drift_detected_at TIMESTAMP,
  -- Why the last sync could not read the release (an unreadable Secret, forbidden, two releases).
  ADD COLUMN IF NOT EXISTS release_error TEXT,
  ADD COLUMN IF NOT EXISTS updated_by VARCHAR(2048);
CREATE INDEX IF NOT EXISTS customers_by_status ON customers (status, id);
CREATE INDEX IF NOT EXISTS customers_with_drift ON customers (id) WHERE drift IS NOT NULL;
CREATE INDEX IF NOT EXISTS customer_component_versions_by_version
  ON customer_component_versions (component, version, customer_id);

-- A customer's history: discovery (found, drift, gone, back, unreadable release) and every change made
-- through the API (who and when). Never deleted with the customer's status; only with the customer.
CREATE TABLE IF NOT EXISTS customer_events (
  id SERIAL PRIMARY KEY,
  customer_id VARCHAR(63) NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  kind VARCHAR(30) NOT NULL,
  detail JSONB NOT NULL DEFAULT '{}'::jsonb,
  actor VARCHAR(2048),
  sync_id INT,
  created_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS customer_events_by_customer ON customer_events (customer_id, id DESC);

-- Pins: keep a customer's component at a version until the pin expires or is removed; deploys of that
-- component leave the customer out (skipped, with the pin's reason) unless the request includes pinned.
CREATE TABLE IF NOT EXISTS customer_pins (
  customer_id VARCHAR(63) NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  component VARCHAR(50) NOT NULL,
  version VARCHAR(128) NOT NULL,
  reason TEXT NOT NULL,
  expires_at TIMESTAMP NOT NULL,
  pinned_by VARCHAR(2048),
  pinned_at TIMESTAMP NOT NULL DEFAULT NOW(),
  PRIMARY KEY (customer_id, component)
);

-- One row per inventory sync (on demand, scheduled, at the local stack's start); its result readable.
CREATE TABLE IF NOT EXISTS inventory_syncs (
  id SERIAL PRIMARY KEY,
  status VARCHAR(20) NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'running', 'completed', 'failed')),
  trigger VARCHAR(20) NOT NULL,
  requested_by VARCHAR(2048),
  counts JSONB NOT NULL DEFAULT '{}'::jsonb,
  problems JSONB NOT NULL DEFAULT '[]'::jsonb,
  error TEXT,
  created_at TIMESTAMP NOT NULL DEFAULT NOW(),
  started_at TIMESTAMP,
  completed_at TIMESTAMP,
  updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);
-- One sync at a time: a second request while one is pending or running gets that one.
CREATE UNIQUE INDEX IF NOT EXISTS inventory_syncs_one_active
  ON inventory_syncs ((true)) WHERE status IN ('pending', 'running');

-- Upgrade rows of customers a deploy left out (pinned, already at the version): status skipped, in no
-- run and no wave (wave -1), with the reason; they count in the upgrade's total and its skipped counter.
ALTER TABLE customer_upgrade_logs ADD COLUMN IF NOT EXISTS left_out VARCHAR(30);

-- Idempotent deploys: the first answer to (caller, Idempotency-Key), replayed for the same body.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  caller VARCHAR(2048) NOT NULL,
  key VARCHAR(255) NOT NULL,
  operation VARCHAR(50) NOT NULL,
  request_hash CHAR(64) NOT NULL,
  status VARCHAR(20) NOT NULL DEFAULT 'in_progress' CHECK (status IN ('in_progress', 'completed')),
  response_status INT,
  response JSONB,
  upgrade_id INT,
  created_at TIMESTAMP NOT NULL DEFAULT NOW(),
  locked_until TIMESTAMP NOT NULL,
  expires_at TIMESTAMP NOT NULL,
  PRIMARY KEY (caller, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_at);
