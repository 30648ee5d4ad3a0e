-- The booking guard: creates tagged with a verifier_ref, their idempotency keys, the verifications
-- they record, and duplicate bookings (a retry Cal.com accepted twice).
-- Keep in step with ../sqlite/0007_guard.sql.

ALTER TABLE accounts ADD COLUMN guard BOOLEAN NOT NULL DEFAULT TRUE;

ALTER TABLE booking_observations ADD COLUMN verifier_ref TEXT;
CREATE INDEX booking_observations_ref ON booking_observations (account, verifier_ref) WHERE verifier_ref IS NOT NULL;

ALTER TABLE verifications ADD COLUMN verifier_ref TEXT;
CREATE UNIQUE INDEX verifications_ref ON verifications (account, verifier_ref) WHERE verifier_ref IS NOT NULL;
DROP INDEX verifications_one_pending;
CREATE UNIQUE INDEX verifications_one_pending ON verifications (account, appointment_id) WHERE status = 'pending' AND verifier_ref IS NULL;

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
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX guard_requests_key ON guard_requests (account, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX guard_requests_expiry ON guard_requests (expires_at);

CREATE TABLE booking_duplicates (
    account           TEXT NOT NULL,
    uid               TEXT NOT NULL,
    seat              TEXT NOT NULL DEFAULT '',
    verification_seq  BIGINT NOT NULL REFERENCES verifications(seq),
    of_uid            TEXT NOT NULL,
    start_at          TIMESTAMPTZ NOT NULL,
    found_at          TIMESTAMPTZ NOT NULL,
    dismissed_at      TIMESTAMPTZ,
    dismissed_by      TEXT,
    PRIMARY KEY (account, uid, seat)
);
CREATE INDEX booking_duplicates_verification ON booking_duplicates (verification_seq);
CREATE INDEX booking_duplicates_open ON booking_duplicates (found_at) WHERE dismissed_at IS NULL;
