-- Maintenance windows: a customer waiting for its window sleeps in a .waitForTaskToken task
-- (WaitForWindow) that times out when the window opens. Its task token is kept here so that an abort
-- (or the reconciler ending the run) releases the wait at once; NULL when the customer does not wait.
ALTER TABLE customer_upgrade_logs ADD COLUMN IF NOT EXISTS window_token TEXT;
CREATE INDEX IF NOT EXISTS customer_upgrade_logs_window_tokens
  ON customer_upgrade_logs (upgrade_id) WHERE window_token IS NOT NULL;
