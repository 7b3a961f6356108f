-- Transport headers an outbox event carries from its cause (W3C trace
-- context): a JSON array of [name, value] pairs. Nullable, so the previous
-- release keeps writing rows without it (expand only).
ALTER TABLE outbox ADD COLUMN headers jsonb;
