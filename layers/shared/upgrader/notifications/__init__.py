"""Lifecycle events and who hears them: the outbox rows (written in the transaction that changes state), the publisher (EventBridge, the webhook), Slack and the metrics."""
