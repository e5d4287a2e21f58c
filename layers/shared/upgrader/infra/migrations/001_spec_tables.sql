-- The two tables of the specification, with its columns and types.
CREATE TABLE IF NOT EXISTS system_upgrades (
  id SERIAL PRIMARY KEY,
  component VARCHAR(50) NOT NULL,
  from_version VARCHAR(50),
  to_version VARCHAR(50) NOT NULL,
  strategy VARCHAR(20) NOT NULL,
  total_customers INT NOT NULL DEFAULT 0,
  completed_customers INT NOT NULL DEFAULT 0,
  failed_customers INT NOT NULL DEFAULT 0,
  status VARCHAR(50) NOT NULL DEFAULT 'pending',
  created_at TIMESTAMP NOT NULL DEFAULT NOW(),
  started_at TIMESTAMP,
  completed_at TIMESTAMP,
  metadata JSONB
);

CREATE TABLE IF NOT EXISTS customer_upgrade_logs (
  id SERIAL PRIMARY KEY,
  upgrade_id INT REFERENCES system_upgrades(id) ON DELETE CASCADE,
  customer_id VARCHAR(255) NOT NULL,
  component VARCHAR(50) NOT NULL,
  from_version VARCHAR(50),
  to_version VARCHAR(50) NOT NULL,
  status VARCHAR(50) NOT NULL DEFAULT 'pending',
  started_at TIMESTAMP,
  completed_at TIMESTAMP,
  output TEXT,
  error TEXT
);
