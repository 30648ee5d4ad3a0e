-- Security: a webhook or callback secret being replaced stays valid until a set time (rotation
-- without a window of refusals), and platform tokens scoped to one account (only their hash kept).
-- The secret columns hold ciphertext (`fernet:…`); the upgrade encrypts older plaintext rows in
-- Python, at migrate time, since SQL cannot know SECRET_KEYS.
-- Keep in step with ../sqlite/0008_security.sql.
ALTER TABLE accounts ADD COLUMN webhook_secret_previous TEXT;
ALTER TABLE accounts ADD COLUMN webhook_secret_previous_until_at TIMESTAMPTZ;
ALTER TABLE accounts ADD COLUMN callback_secret_previous TEXT;
ALTER TABLE accounts ADD COLUMN callback_secret_previous_until_at TIMESTAMPTZ;

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    account     TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX api_tokens_account ON api_tokens (account);
