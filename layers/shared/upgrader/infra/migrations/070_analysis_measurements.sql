-- Every measurement of a deploy's metric analysis (issue 20; upgrader.analysis.measurements): one row per
-- (upgrade, wave, round, check, customer), the query as it ran, the customer's cohort (the upgraded
-- customers, or the control group still on the old version), the value or why there is none, and the
-- verdict the judgement gave. A retried analysis step writes the same keys again: ON CONFLICT DO NOTHING.
CREATE TABLE IF NOT EXISTS analysis_measurements (
  upgrade_id INT NOT NULL REFERENCES system_upgrades(id) ON DELETE CASCADE,
  wave INT NOT NULL CHECK (wave >= 0),
  round INT NOT NULL CHECK (round >= 0),
  check_name VARCHAR(63) NOT NULL,
  customer_id VARCHAR(255) NOT NULL,
  cohort VARCHAR(10) NOT NULL CHECK (cohort IN ('upgraded', 'control')),
  query TEXT NOT NULL,
  measured_at TIMESTAMPTZ NOT NULL,
  value DOUBLE PRECISION,
  error VARCHAR(500),
  verdict VARCHAR(12) CHECK (verdict IN ('pass', 'fail', 'inconclusive')),
  PRIMARY KEY (upgrade_id, wave, round, check_name, customer_id),
  CHECK (value IS NOT NULL OR error IS NOT NULL)
);
