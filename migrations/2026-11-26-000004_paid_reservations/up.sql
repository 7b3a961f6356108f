-- PAID: a payment succeeded before the order was seen; the late
-- OrderCreatedEvent reserves and deducts at once (COMMITTED) or fails.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('RESERVED', 'COMMITTED', 'RELEASED', 'FAILED', 'CANCELLED', 'PAID'));
