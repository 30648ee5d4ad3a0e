-- Declared column types: every timestamp column becomes UTCTIME TEXT and every flag BOOL INTEGER.
-- The first word names the converter the SQLite connector registers (UTC text -> aware datetime,
-- 0/1 -> bool); the second keeps the column's type affinity, so stored values do not change.
-- Keep in step with ../postgresql/0005_declared_types.sql (nothing to do there: TIMESTAMPTZ, BOOLEAN).
--
-- SQLite cannot change a column's type in place. Each table is rebuilt the documented way: create
-- new_X with the new declarations, copy every row, drop X, rename new_X to X, recreate X's indexes
-- with their old names. The runner switches foreign-key enforcement off around this transaction
-- and checks every foreign key before COMMIT. AUTOINCREMENT tables carry their sqlite_sequence value
-- over, so a seq freed by a deleted row is never handed out again. counters and schema_migrations
-- have neither timestamps nor flags and stay as they are.

CREATE TABLE new_accounts (
    id                      TEXT PRIMARY KEY,
    calcom_api_key          TEXT NOT NULL,
    webhook_secret          TEXT NOT NULL,
    calcom_api_base         TEXT,
    callback_url            TEXT,
    callback_secret         TEXT,
    match_tolerance_seconds INTEGER NOT NULL DEFAULT 300,
    enabled                 BOOL INTEGER NOT NULL DEFAULT 1,
    credentials             TEXT NOT NULL DEFAULT 'ok',
    credentials_error       TEXT,
    credentials_changed_at  UTCTIME TEXT,
    poll_lease_owner        TEXT,
    poll_lease_expires_at   UTCTIME TEXT,
    created_at              UTCTIME TEXT NOT NULL,
    updated_at              UTCTIME TEXT NOT NULL,
    time_only_matching      BOOL INTEGER NOT NULL DEFAULT 0
);
INSERT INTO new_accounts (id, calcom_api_key, webhook_secret, calcom_api_base, callback_url, callback_secret,
    match_tolerance_seconds, enabled, credentials, credentials_error, credentials_changed_at, poll_lease_owner,
    poll_lease_expires_at, created_at, updated_at, time_only_matching)
SELECT id, calcom_api_key, webhook_secret, calcom_api_base, callback_url, callback_secret,
    match_tolerance_seconds, enabled, credentials, credentials_error, credentials_changed_at, poll_lease_owner,
    poll_lease_expires_at, created_at, updated_at, time_only_matching
FROM accounts;
DROP TABLE accounts;
ALTER TABLE new_accounts RENAME TO accounts;

CREATE TABLE new_calcom_keys (
    key_hash        TEXT PRIMARY KEY,
    paused_until_at UTCTIME TEXT,
    remaining       INTEGER,
    reset_at        UTCTIME TEXT,
    updated_at      UTCTIME TEXT NOT NULL
);
INSERT INTO new_calcom_keys (key_hash, paused_until_at, remaining, reset_at, updated_at)
SELECT key_hash, paused_until_at, remaining, reset_at, updated_at FROM calcom_keys;
DROP TABLE calcom_keys;
ALTER TABLE new_calcom_keys RENAME TO calcom_keys;

CREATE TABLE new_verifications (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    account           TEXT NOT NULL REFERENCES accounts(id),
    appointment_id    TEXT NOT NULL,
    service           TEXT,
    sync_error        TEXT,
    fingerprint       TEXT NOT NULL,
    status            TEXT NOT NULL,
    review_reason     TEXT,
    resolution        TEXT,
    resolved_via      TEXT,
    note              TEXT,
    window_start_at   UTCTIME TEXT NOT NULL,
    window_end_at     UTCTIME TEXT NOT NULL,
    created_at        UTCTIME TEXT NOT NULL,
    updated_at        UTCTIME TEXT NOT NULL,
    resolved_at       UTCTIME TEXT,
    review_started_at UTCTIME TEXT,
    next_check_at     UTCTIME TEXT,
    deadline_at       UTCTIME TEXT NOT NULL,
    checks            INTEGER NOT NULL DEFAULT 0,
    complete_checks   INTEGER NOT NULL DEFAULT 0,
    failures          INTEGER NOT NULL DEFAULT 0,
    last_checked_at   UTCTIME TEXT,
    last_check_error  TEXT,
    lease_owner       TEXT,
    lease_expires_at  UTCTIME TEXT
);
INSERT INTO new_verifications (seq, id, account, appointment_id, service, sync_error, fingerprint, status,
    review_reason, resolution, resolved_via, note, window_start_at, window_end_at, created_at, updated_at,
    resolved_at, review_started_at, next_check_at, deadline_at, checks, complete_checks, failures,
    last_checked_at, last_check_error, lease_owner, lease_expires_at)
SELECT seq, id, account, appointment_id, service, sync_error, fingerprint, status,
    review_reason, resolution, resolved_via, note, window_start_at, window_end_at, created_at, updated_at,
    resolved_at, review_started_at, next_check_at, deadline_at, checks, complete_checks, failures,
    last_checked_at, last_check_error, lease_owner, lease_expires_at
FROM verifications;
DELETE FROM sqlite_sequence WHERE name = 'new_verifications';
INSERT INTO sqlite_sequence (name, seq) SELECT 'new_verifications', seq FROM sqlite_sequence WHERE name = 'verifications';
DROP TABLE verifications;
ALTER TABLE new_verifications RENAME TO verifications;
CREATE UNIQUE INDEX verifications_one_pending ON verifications (account, appointment_id) WHERE status = 'pending';
CREATE INDEX verifications_appointment ON verifications (account, appointment_id, seq);
CREATE INDEX verifications_due ON verifications (next_check_at) WHERE status = 'pending';
CREATE INDEX verifications_status ON verifications (status, seq);
CREATE INDEX verifications_account ON verifications (account, seq);
CREATE INDEX verifications_resolved ON verifications (resolved_at);
CREATE INDEX verifications_due_account ON verifications (account, next_check_at) WHERE status = 'pending';

CREATE TABLE new_phases (
    verification_seq  INTEGER NOT NULL REFERENCES verifications(seq),
    key               TEXT NOT NULL,
    position          INTEGER NOT NULL,
    account           TEXT NOT NULL,
    start_at          UTCTIME TEXT NOT NULL,
    end_at            UTCTIME TEXT,
    event_type_id     INTEGER,
    host_email        TEXT,
    attendee_email    TEXT,
    staff_required    BOOL INTEGER NOT NULL,
    active            BOOL INTEGER NOT NULL,
    status            TEXT NOT NULL,
    booking_uid       TEXT,
    booking_seat      TEXT,
    booking_id        INTEGER,
    booking_start_at  UTCTIME TEXT,
    booking_source    TEXT,
    attendee_phone    TEXT,
    booking_identity  TEXT,
    PRIMARY KEY (verification_seq, key)
);
INSERT INTO new_phases (verification_seq, key, position, account, start_at, end_at, event_type_id, host_email,
    attendee_email, staff_required, active, status, booking_uid, booking_seat, booking_id, booking_start_at,
    booking_source, attendee_phone, booking_identity)
SELECT verification_seq, key, position, account, start_at, end_at, event_type_id, host_email,
    attendee_email, staff_required, active, status, booking_uid, booking_seat, booking_id, booking_start_at,
    booking_source, attendee_phone, booking_identity
FROM phases;
DROP TABLE phases;
ALTER TABLE new_phases RENAME TO phases;
CREATE INDEX phases_active ON phases (account, start_at) WHERE active;

CREATE TABLE new_booking_observations (
    account          TEXT NOT NULL,
    uid              TEXT NOT NULL,
    seat             TEXT NOT NULL DEFAULT '',
    booking_id       INTEGER,
    start_at         UTCTIME TEXT NOT NULL,
    end_at           UTCTIME TEXT,
    state            TEXT NOT NULL,
    calcom_status    TEXT,
    event_type_id    INTEGER,
    hosts            TEXT NOT NULL DEFAULT '[]',
    attendees        TEXT NOT NULL DEFAULT '[]',
    appointment_tag  TEXT,
    phase_tag        TEXT,
    source           TEXT NOT NULL,
    event_at         UTCTIME TEXT NOT NULL,
    first_seen_at    UTCTIME TEXT NOT NULL,
    updated_at       UTCTIME TEXT NOT NULL,
    phones           TEXT NOT NULL DEFAULT '[]',
    webhook_event_at UTCTIME TEXT,
    observed_at      UTCTIME TEXT,
    PRIMARY KEY (account, uid, seat)
);
INSERT INTO new_booking_observations (account, uid, seat, booking_id, start_at, end_at, state, calcom_status,
    event_type_id, hosts, attendees, appointment_tag, phase_tag, source, event_at, first_seen_at, updated_at,
    phones, webhook_event_at, observed_at)
SELECT account, uid, seat, booking_id, start_at, end_at, state, calcom_status,
    event_type_id, hosts, attendees, appointment_tag, phase_tag, source, event_at, first_seen_at, updated_at,
    phones, webhook_event_at, observed_at
FROM booking_observations;
DROP TABLE booking_observations;
ALTER TABLE new_booking_observations RENAME TO booking_observations;
CREATE INDEX booking_observations_start ON booking_observations (account, start_at);
CREATE INDEX booking_observations_tag ON booking_observations (account, appointment_tag) WHERE appointment_tag IS NOT NULL;

CREATE TABLE new_booking_claims (
    account           TEXT NOT NULL,
    booking_uid       TEXT NOT NULL,
    booking_seat      TEXT NOT NULL DEFAULT '',
    verification_seq  INTEGER NOT NULL REFERENCES verifications(seq),
    phase_key         TEXT NOT NULL,
    claimed_at        UTCTIME TEXT NOT NULL,
    PRIMARY KEY (account, booking_uid, booking_seat)
);
INSERT INTO new_booking_claims (account, booking_uid, booking_seat, verification_seq, phase_key, claimed_at)
SELECT account, booking_uid, booking_seat, verification_seq, phase_key, claimed_at FROM booking_claims;
DROP TABLE booking_claims;
ALTER TABLE new_booking_claims RENAME TO booking_claims;
CREATE INDEX booking_claims_verification ON booking_claims (verification_seq);

CREATE TABLE new_webhook_events (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    account           TEXT NOT NULL,
    body_sha256       TEXT NOT NULL,
    trigger_event     TEXT NOT NULL,
    booking_uid       TEXT,
    event_created_at  UTCTIME TEXT,
    received_at       UTCTIME TEXT NOT NULL,
    body              TEXT NOT NULL,
    UNIQUE (account, body_sha256)
);
INSERT INTO new_webhook_events (seq, account, body_sha256, trigger_event, booking_uid, event_created_at, received_at, body)
SELECT seq, account, body_sha256, trigger_event, booking_uid, event_created_at, received_at, body FROM webhook_events;
DELETE FROM sqlite_sequence WHERE name = 'new_webhook_events';
INSERT INTO sqlite_sequence (name, seq) SELECT 'new_webhook_events', seq FROM sqlite_sequence WHERE name = 'webhook_events';
DROP TABLE webhook_events;
ALTER TABLE new_webhook_events RENAME TO webhook_events;
CREATE INDEX webhook_events_received ON webhook_events (received_at);

CREATE TABLE new_outbox (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    verification_seq  INTEGER NOT NULL REFERENCES verifications(seq),
    account           TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    payload           TEXT NOT NULL,
    state             TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    last_status       INTEGER,
    last_error        TEXT,
    created_at        UTCTIME TEXT NOT NULL,
    next_attempt_at   UTCTIME TEXT,
    delivered_at      UTCTIME TEXT,
    lease_owner       TEXT,
    lease_expires_at  UTCTIME TEXT
);
INSERT INTO new_outbox (seq, id, verification_seq, account, event_type, payload, state, attempts, last_status,
    last_error, created_at, next_attempt_at, delivered_at, lease_owner, lease_expires_at)
SELECT seq, id, verification_seq, account, event_type, payload, state, attempts, last_status,
    last_error, created_at, next_attempt_at, delivered_at, lease_owner, lease_expires_at
FROM outbox;
DELETE FROM sqlite_sequence WHERE name = 'new_outbox';
INSERT INTO sqlite_sequence (name, seq) SELECT 'new_outbox', seq FROM sqlite_sequence WHERE name = 'outbox';
DROP TABLE outbox;
ALTER TABLE new_outbox RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_verification ON outbox (verification_seq, seq);

CREATE TABLE new_pollers (
    id            TEXT PRIMARY KEY,
    hostname      TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    UTCTIME TEXT NOT NULL,
    heartbeat_at  UTCTIME TEXT NOT NULL,
    stopped_at    UTCTIME TEXT,
    ticks         INTEGER NOT NULL DEFAULT 0
);
INSERT INTO new_pollers (id, hostname, pid, started_at, heartbeat_at, stopped_at, ticks)
SELECT id, hostname, pid, started_at, heartbeat_at, stopped_at, ticks FROM pollers;
DROP TABLE pollers;
ALTER TABLE new_pollers RENAME TO pollers;
