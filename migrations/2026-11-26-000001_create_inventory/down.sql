DROP TABLE stock_adjustments;
DROP TABLE outbox;
DROP TABLE processed_events;
DROP TABLE reservation_lines;
DROP TABLE reservations;
DROP TABLE inventory;
