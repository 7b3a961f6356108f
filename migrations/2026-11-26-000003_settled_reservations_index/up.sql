-- Settled reservations (committed, released, failed, cancelled) are purged
-- after RESERVATION_RETENTION_DAYS; this index finds the old ones.
CREATE INDEX reservations_settled ON reservations (updated_at) WHERE status <> 'RESERVED';
