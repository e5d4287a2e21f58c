-- Helm's full output, one row per helm Job of a customer's log row, written by the worker that read the
-- Job (check_helm_job, the reconciler), redacted (upgrader.redaction), bounded (MAX_OUTPUT_BYTES of the
-- cluster config), kept HELM_OUTPUT_RETENTION_DAYS (the reconciler's sweep deletes older rows). The log
-- row's `output` (GET .../logs, the viewer policy) holds only a summary of each Job's output, without its
-- NOTES; this table is read by GET .../logs/{logId}/output, behind its own permission.
CREATE TABLE IF NOT EXISTS helm_outputs (
  log_id INT NOT NULL REFERENCES customer_upgrade_logs(id) ON DELETE CASCADE,
  job_name VARCHAR(63) NOT NULL,
  stage VARCHAR(30) NOT NULL,
  phase VARCHAR(20) NOT NULL,
  output TEXT NOT NULL,
  recorded_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  PRIMARY KEY (log_id, job_name)
);
CREATE INDEX IF NOT EXISTS helm_outputs_recorded_at ON helm_outputs (recorded_at);
