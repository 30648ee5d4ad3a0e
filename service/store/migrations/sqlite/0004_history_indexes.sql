-- Indexes that keep the poll path's statements from growing with the stored history.
-- Keep in step with ../postgresql/0004_history_indexes.sql.

-- One account's due work (claiming due verifications for a poll): a range on next_check_at among
-- the pending ones, instead of every verification the account ever had. Several accounts at once
-- ("which accounts have due work?") read it as one short range per account.
CREATE INDEX verifications_due_account ON verifications (account, next_check_at) WHERE status = 'pending';
