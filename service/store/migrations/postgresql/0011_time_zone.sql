-- The account's time zone (an IANA name): the console shows phase times in UTC and in it.
-- Keep in step with ../sqlite/0011_time_zone.sql.

ALTER TABLE accounts ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

-- The console's review queue (every account's, one account's), longest in review first: read in
-- these indexes' order from the oldest, never through the whole history. They hold only the rows in
-- review, so no other statement reads them by mistake.
CREATE INDEX verifications_review ON verifications ((COALESCE(review_started_at, created_at)), seq)
    WHERE status = 'manual_review';
CREATE INDEX verifications_review_account ON verifications (account, (COALESCE(review_started_at, created_at)), seq)
    WHERE status = 'manual_review';
