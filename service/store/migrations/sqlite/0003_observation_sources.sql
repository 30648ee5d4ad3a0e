-- Which observation of a booking is newer is decided per source, each on its own clock: webhooks by
-- Cal.com's `createdAt`, everything else by our time of receipt or fetch. "Gone" is final.
-- Keep in step with ../postgresql/0003_observation_sources.sql.

-- The newest webhook `createdAt` applied to the row (Cal.com's clock); NULL until a webhook told us.
ALTER TABLE booking_observations ADD COLUMN webhook_event_at TEXT;
-- Our time of the details stored: when the webhook was received, or when the poll fetched them.
ALTER TABLE booking_observations ADD COLUMN observed_at TEXT;

UPDATE booking_observations SET
    webhook_event_at = CASE WHEN source = 'webhook' THEN event_at END,
    observed_at = CASE WHEN source = 'poll' THEN event_at ELSE updated_at END;
