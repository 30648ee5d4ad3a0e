-- Initial schema (SQLite). Timestamps are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (sorts in time order).
-- Keep in step with ../postgresql/0001_initial.sql: same tables, columns and indexes.

CREATE TABLE accounts (
    id                      TEXT PRIMARY KEY,
    calcom_api_key          TEXT NOT NULL,
    webhook_secret          TEXT NOT NULL,
    calcom_api_base         TEXT,
    callback_url            TEXT,
    callback_secret         TEXT,
    match_tolerance_seconds INTEGER NOT NULL DEFAULT 300,
    enabled                 INTEGER NOT NULL DEFAULT 1,
    credentials             TEXT NOT NULL DEFAULT 'ok',
    credentials_error       TEXT,
    credentials_changed_at  TEXT,
    poll_lease_owner        TEXT,
    poll_lease_expires_at   TEXT,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL
);

-- Rate-limit state per Cal.com API key (sha256 of the key), shared by every poller.
CREATE TABLE calcom_keys (
    key_hash      TEXT PRIMARY KEY,
    paused_until_at TEXT,
    remaining     INTEGER,
    reset_at      TEXT,
    updated_at    TEXT NOT NULL
);

CREATE TABLE verifications (
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
    window_start_at   TEXT NOT NULL,
    window_end_at     TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    resolved_at       TEXT,
    review_started_at TEXT,
    next_check_at     TEXT,
    deadline_at       TEXT NOT NULL,
    checks            INTEGER NOT NULL DEFAULT 0,
    complete_checks   INTEGER NOT NULL DEFAULT 0,
    failures          INTEGER NOT NULL DEFAULT 0,
    last_checked_at   TEXT,
    last_check_error  TEXT,
    lease_owner       TEXT,
    lease_expires_at  TEXT
);
CREATE UNIQUE INDEX verifications_one_pending ON verifications (account, appointment_id) WHERE status = 'pending';
CREATE INDEX verifications_appointment ON verifications (account, appointment_id, seq);
CREATE INDEX verifications_due ON verifications (next_check_at) WHERE status = 'pending';
CREATE INDEX verifications_status ON verifications (status, seq);
CREATE INDEX verifications_account ON verifications (account, seq);
CREATE INDEX verifications_resolved ON verifications (resolved_at);

CREATE TABLE phases (
    verification_seq  INTEGER NOT NULL REFERENCES verifications(seq),
    key               TEXT NOT NULL,
    position          INTEGER NOT NULL,
    account           TEXT NOT NULL,
    start_at          TEXT NOT NULL,
    end_at            TEXT,
    event_type_id     INTEGER,
    host_email        TEXT,
    attendee_email    TEXT,
    staff_required    INTEGER NOT NULL,
    active            INTEGER NOT NULL,
    status            TEXT NOT NULL,
    booking_uid       TEXT,
    booking_seat      TEXT,
    booking_id        INTEGER,
    booking_start_at  TEXT,
    booking_source    TEXT,
    PRIMARY KEY (verification_seq, key)
);
-- "Which pending phases start near this booking?" — the webhook path's one index probe.
CREATE INDEX phases_active ON phases (account, start_at) WHERE active;

-- What we know of each Cal.com booking (one row per booking uid, or per seat of a seated one).
CREATE TABLE booking_observations (
    account          TEXT NOT NULL,
    uid              TEXT NOT NULL,
    seat             TEXT NOT NULL DEFAULT '',
    booking_id       INTEGER,
    start_at         TEXT NOT NULL,
    end_at           TEXT,
    state            TEXT NOT NULL,
    calcom_status    TEXT,
    event_type_id    INTEGER,
    hosts            TEXT NOT NULL DEFAULT '[]',
    attendees        TEXT NOT NULL DEFAULT '[]',
    appointment_tag  TEXT,
    phase_tag        TEXT,
    source           TEXT NOT NULL,
    event_at         TEXT NOT NULL,
    first_seen_at    TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (account, uid, seat)
);
CREATE INDEX booking_observations_start ON booking_observations (account, start_at);
CREATE INDEX booking_observations_tag ON booking_observations (account, appointment_tag) WHERE appointment_tag IS NOT NULL;

-- A booking (or seat) satisfies at most one phase, across all verifications.
CREATE TABLE booking_claims (
    account           TEXT NOT NULL,
    booking_uid       TEXT NOT NULL,
    booking_seat      TEXT NOT NULL DEFAULT '',
    verification_seq  INTEGER NOT NULL REFERENCES verifications(seq),
    phase_key         TEXT NOT NULL,
    claimed_at        TEXT NOT NULL,
    PRIMARY KEY (account, booking_uid, booking_seat)
);
CREATE INDEX booking_claims_verification ON booking_claims (verification_seq);

-- Every signed webhook body we accepted, once (duplicates are recognised by body hash).
CREATE TABLE webhook_events (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    account           TEXT NOT NULL,
    body_sha256       TEXT NOT NULL,
    trigger_event     TEXT NOT NULL,
    booking_uid       TEXT,
    event_created_at  TEXT,
    received_at       TEXT NOT NULL,
    body              TEXT NOT NULL,
    UNIQUE (account, body_sha256)
);
CREATE INDEX webhook_events_received ON webhook_events (received_at);

-- Verdict events for the platform, written in the verdict's transaction, delivered by pollers.
CREATE TABLE outbox (
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
    created_at        TEXT NOT NULL,
    next_attempt_at   TEXT,
    delivered_at      TEXT,
    lease_owner       TEXT,
    lease_expires_at  TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_verification ON outbox (verification_seq, seq);

CREATE TABLE pollers (
    id            TEXT PRIMARY KEY,
    hostname      TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    TEXT NOT NULL,
    heartbeat_at  TEXT NOT NULL,
    stopped_at    TEXT,
    ticks         INTEGER NOT NULL DEFAULT 0
);
