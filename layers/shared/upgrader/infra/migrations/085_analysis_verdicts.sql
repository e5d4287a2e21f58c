-- The verdict of each analysed wave (issue 20; upgrader.rollout.analysis_gate): pass, fail or inconclusive, why, and
-- each check's rule, reason and evidence. One row per (upgrade, wave): a retried JudgeWave writes nothing new.
CREATE TABLE IF NOT EXISTS analysis_verdicts (
  upgrade_id INT NOT NULL REFERENCES system_upgrades(id) ON DELETE CASCADE,
  wave INT NOT NULL CHECK (wave >= 0),
  verdict VARCHAR(12) NOT NULL CHECK (verdict IN ('pass', 'fail', 'inconclusive')),
  reason TEXT NOT NULL,
  checks JSONB NOT NULL,
  judged_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  PRIMARY KEY (upgrade_id, wave)
);
