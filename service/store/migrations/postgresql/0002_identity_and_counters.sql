-- Identity before verification: phases may name the attendee's phone, observations keep the
-- attendees' phone digits, a matched phase records what tied its booking to it (tag, person, time),
-- and an account may accept time-only matches. Counters for events /metrics reports.
ALTER TABLE phases ADD COLUMN attendee_phone TEXT;
ALTER TABLE phases ADD COLUMN booking_identity TEXT;
ALTER TABLE booking_observations ADD COLUMN phones TEXT NOT NULL DEFAULT '[]';
ALTER TABLE accounts ADD COLUMN time_only_matching BOOLEAN NOT NULL DEFAULT FALSE;

-- Monotonic counters shared by every process (what /metrics reports as *_total).
CREATE TABLE counters (
    name   TEXT NOT NULL,
    label  TEXT NOT NULL DEFAULT '',
    value  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (name, label)
);
