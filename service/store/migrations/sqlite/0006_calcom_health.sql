-- Whether Cal.com answers an account's checks: since when they fail (NULL while the latest check got
-- a complete answer), when the latest failure was and what it was. /status reports an account whose
-- checks have failed for longer than CALCOM_ALERT_SECONDS.
-- Keep in step with ../postgresql/0006_calcom_health.sql.
ALTER TABLE accounts ADD COLUMN calcom_failing_since_at UTCTIME TEXT;
ALTER TABLE accounts ADD COLUMN calcom_failed_at UTCTIME TEXT;
ALTER TABLE accounts ADD COLUMN calcom_failure TEXT;
