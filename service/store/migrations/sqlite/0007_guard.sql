-- The booking guard: creates tagged with a verifier_ref, their idempotency keys, the verifications
-- they record, and duplicate bookings (a retry Cal.com accepted twice).
-- Keep in step with ../postgresql/0007_guard.sql.

ALTER TABLE accounts ADD COLUMN guard BOOL INTEGER NOT NULL DEFAULT 1;

-- `metadata.verifier_ref` of a booking the guard created.
ALTER TABLE booking_observations ADD COLUMN verifier_ref TEXT;
CREATE INDEX booking_observations_ref ON booking_observations (account, verifier_ref) WHERE verifier_ref IS NOT NULL;

-- A verification the guard recorded is keyed by its verifier_ref, not by the appointment: the
-- one-pending-per-appointment rule is for the platform's own records only.
ALTER TABLE verifications ADD COLUMN verifier_ref TEXT;
CREATE UNIQUE INDEX verifications_ref ON verifications (account, verifier_ref) WHERE verifier_ref IS NOT NULL;
DROP INDEX verifications_one_pending;
CREATE UNIQUE INDEX verifications_one_pending ON verifications (account, appointment_id) WHERE status = 'pending' AND verifier_ref IS NULL;

-- Every create through the guard; with an Idempotency-Key, the answer replayed for 24 h.
CREATE TABLE guard_requests (
    verifier_ref      TEXT PRIMARY KEY,
    account           TEXT NOT NULL,
    idempotency_key   TEXT,
    fingerprint       TEXT NOT NULL,
    state             TEXT NOT NULL,
    request           TEXT NOT NULL,
    status            INTEGER,
    response_body     TEXT,
    response_headers  TEXT,
    verification_id   TEXT,
    created_at        UTCTIME TEXT NOT NULL,
    updated_at        UTCTIME TEXT NOT NULL,
    expires_at        UTCTIME TEXT NOT NULL
);
CREATE UNIQUE INDEX guard_requests_key ON guard_requests (account, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX guard_requests_expiry ON guard_requests (expires_at);

-- A booking tagged like one already claimed (same verifier_ref, or same appointment and phase).
CREATE TABLE booking_duplicates (
    account           TEXT NOT NULL,
    uid               TEXT NOT NULL,
    seat              TEXT NOT NULL DEFAULT '',
    verification_seq  INTEGER NOT NULL REFERENCES verifications(seq),
    of_uid            TEXT NOT NULL,
    start_at          UTCTIME TEXT NOT NULL,
    found_at          UTCTIME TEXT NOT NULL,
    dismissed_at      UTCTIME TEXT,
    dismissed_by      TEXT,
    PRIMARY KEY (account, uid, seat)
);
CREATE INDEX booking_duplicates_verification ON booking_duplicates (verification_seq);
CREATE INDEX booking_duplicates_open ON booking_duplicates (found_at) WHERE dismissed_at IS NULL;
