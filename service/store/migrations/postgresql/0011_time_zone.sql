-- The account's time zone (an IANA name): the console shows phase times in UTC and in it.
-- Keep in step with ../sqlite/0011_time_zone.sql.

ALTER TABLE accounts ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
