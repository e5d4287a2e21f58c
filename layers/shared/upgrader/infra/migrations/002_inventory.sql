-- Customer inventory and per-customer component versions
-- ("update version tracking in customer metadata" in the specification).
CREATE TABLE IF NOT EXISTS customers (
  id VARCHAR(63) PRIMARY KEY,
  namespace VARCHAR(63) NOT NULL UNIQUE,
  release_name VARCHAR(53) NOT NULL,
  status VARCHAR(20) NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'suspended', 'decommissioned')),
  labels JSONB NOT NULL DEFAULT '{}'::jsonb,
  maintenance_window JSONB,
  created_at TIMESTAMP NOT NULL DEFAULT NOW(),
  updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS customer_component_versions (
  customer_id VARCHAR(63) NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  component VARCHAR(50) NOT NULL,
  version VARCHAR(128) NOT NULL,
  previous_version VARCHAR(128),
  upgrade_id INT REFERENCES system_upgrades(id) ON DELETE SET NULL,
  updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
  PRIMARY KEY (customer_id, component)
);
