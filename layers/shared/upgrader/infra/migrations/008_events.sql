-- Lifecycle events leave through an outbox: a state change and the event describing it are written in
-- one transaction; a publisher sends the rows (EventBridge in AWS) and marks them sent.
CREATE TABLE IF NOT EXISTS event_outbox (
  id BIGSERIAL PRIMARY KEY,
  -- What happened, once (e.g. "wave-started:<run>:<wave>"): a retried or duplicated worker writes no second row.
  event_key TEXT NOT NULL UNIQUE,
  detail_type VARCHAR(80) NOT NULL,
  severity VARCHAR(12) NOT NULL CHECK (severity IN ('info', 'attention', 'critical')),
  component VARCHAR(50),
  upgrade_id INT,  -- no foreign key: an event outlives nothing it describes, and never blocks a delete
  customer_id VARCHAR(255),
  detail JSONB NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT NOW(),
  sent_at TIMESTAMP,
  attempts INT NOT NULL DEFAULT 0,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS event_outbox_unsent ON event_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS event_outbox_by_upgrade ON event_outbox (upgrade_id, id);

-- Channels served straight from the outbox (the local stack's webhook, Slack stand-in, metrics): one row per
-- event and channel once delivered, so a retry after a partial failure never sends a channel an event twice.
CREATE TABLE IF NOT EXISTS event_deliveries (
  event_id BIGINT NOT NULL REFERENCES event_outbox(id) ON DELETE CASCADE,
  channel VARCHAR(40) NOT NULL,
  delivered_at TIMESTAMP NOT NULL DEFAULT NOW(),
  PRIMARY KEY (event_id, channel)
);

-- Slack: one message per upgrade and channel, updated in place; threaded replies once per event.
CREATE TABLE IF NOT EXISTS slack_messages (
  upgrade_id INT NOT NULL,
  channel VARCHAR(80) NOT NULL,
  ts VARCHAR(40),
  text_hash VARCHAR(64),
  updated_at TIMESTAMP,
  updates INT NOT NULL DEFAULT 0,
  PRIMARY KEY (upgrade_id, channel)
);
CREATE TABLE IF NOT EXISTS slack_replies (
  event_id BIGINT NOT NULL,
  channel VARCHAR(80) NOT NULL,
  ts VARCHAR(40),
  created_at TIMESTAMP NOT NULL DEFAULT NOW(),
  PRIMARY KEY (event_id, channel)
);
