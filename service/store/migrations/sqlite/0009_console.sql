-- The operator console: operators (named people, Argon2 hashes), the audit log of what they and
-- the API changed, and who resolved a verification.
-- Keep in step with ../postgresql/0009_console.sql.

CREATE TABLE operators (
    name              TEXT PRIMARY KEY,
    password_hash     TEXT NOT NULL,
    -- Raised by signing out (or a new password): every session cookie of an older epoch stops working.
    session_epoch     INTEGER NOT NULL DEFAULT 0,
    created_at        UTCTIME TEXT NOT NULL
);

-- Who did what, when; `detail` is a short JSON text without any secret.
CREATE TABLE audit_log (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    at                UTCTIME TEXT NOT NULL,
    actor             TEXT NOT NULL,
    action            TEXT NOT NULL,
    subject           TEXT,
    detail            TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);

ALTER TABLE verifications ADD COLUMN resolved_by TEXT;

-- The dashboard's 14 days, and each account's last webhook on the accounts page.
CREATE INDEX verifications_created ON verifications (created_at);
CREATE INDEX webhook_events_account_received ON webhook_events (account, received_at);
