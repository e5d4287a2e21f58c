-- Maintenance windows: a customer whose window is closed is not started (it holds no concurrency slot of
-- the wave's Distributed Map); the run's execution waits for the earliest opening between slices of the
-- wave, in a .waitForTaskToken task (WaitForWindows). Its task token is kept on the run so that an abort
-- or a failure-budget halt ends that wait at once; NULL when the run does not wait.
-- (customer_upgrade_logs.window_token, migration 009, held the per-customer waits of before; no longer
-- written.)
ALTER TABLE upgrade_runs ADD COLUMN IF NOT EXISTS window_token TEXT;
