-- Webhook events are stored (and answered) first and matched just after, in their own transaction.
-- `unmatched` = 1 marks an event stored but not yet matched: a process killed in between leaves it
-- marked, and the next web process start (or the poller's next tick) matches it from its stored body.
-- Rows stored before this migration were matched in their storing transaction: 0.
-- Keep in step with ../sqlite/0010_ingest.sql.
ALTER TABLE webhook_events ADD COLUMN unmatched INTEGER NOT NULL DEFAULT 0;
CREATE INDEX webhook_events_unmatched ON webhook_events (seq) WHERE unmatched = 1;
