-- A bulk count's answer, line by line, replayed to a retry under the same Idempotency-Key
-- (the row's single-product columns hold its first line).
ALTER TABLE idempotency_keys ADD COLUMN lines jsonb;
