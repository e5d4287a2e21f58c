-- Rings and promotion rules (issue 21, docs/rings.md). The ring ORDER is a setting, not a table: every
-- function reads the same validated order at cold start, a change goes through a deploy (reviewed), and
-- a stored ring the order no longer holds reads as the last ring (the safe side).

-- A customer's ring (from a namespace label at discovery, or PATCH). NULL: none given, the last ring.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS ring VARCHAR(63);
CREATE INDEX IF NOT EXISTS customers_by_ring ON customers (ring, id);

-- The customer's ring when the deploy wrote its row: a version's evidence on a ring never changes when a
-- customer moves to another ring later. NULL on rows written before rings existed (no evidence anywhere).
ALTER TABLE customer_upgrade_logs ADD COLUMN IF NOT EXISTS ring VARCHAR(63);
CREATE INDEX IF NOT EXISTS customer_upgrade_logs_by_version_and_ring
  ON customer_upgrade_logs (component, to_version, ring, upgrade_id)
  WHERE operation = 'upgrade' AND ring IS NOT NULL;

-- One rule per component (a component without a row has the default rule: 100 %, no halt, no bake).
CREATE TABLE IF NOT EXISTS promotion_rules (
  component VARCHAR(50) PRIMARY KEY,
  min_success_percent NUMERIC(5, 2) NOT NULL CHECK (min_success_percent BETWEEN 0 AND 100),
  min_bake_seconds INT NOT NULL CHECK (min_bake_seconds >= 0),
  no_halt BOOLEAN NOT NULL DEFAULT TRUE,
  updated_by VARCHAR(2048),
  updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);

-- Every change of a rule, written in the transaction that makes it: who, when, before and after.
CREATE TABLE IF NOT EXISTS promotion_rule_events (
  id SERIAL PRIMARY KEY,
  component VARCHAR(50) NOT NULL,
  kind VARCHAR(10) NOT NULL CHECK (kind IN ('set', 'deleted')),
  before JSONB,
  after JSONB,
  actor VARCHAR(2048),
  created_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS promotion_rule_events_by_component ON promotion_rule_events (component, id DESC);

-- A promotion forced past a refusal: recorded with the upgrade it started, what was missing and why.
CREATE TABLE IF NOT EXISTS promotion_overrides (
  id SERIAL PRIMARY KEY,
  upgrade_id INT NOT NULL REFERENCES system_upgrades(id) ON DELETE CASCADE,
  component VARCHAR(50) NOT NULL,
  version VARCHAR(128) NOT NULL,
  ring VARCHAR(63) NOT NULL,
  missing JSONB NOT NULL,
  reason TEXT NOT NULL,
  forced_by VARCHAR(2048),
  created_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS promotion_overrides_by_version ON promotion_overrides (component, version, ring);
