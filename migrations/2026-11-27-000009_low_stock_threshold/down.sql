ALTER TABLE idempotency_keys DROP COLUMN low_stock_threshold;
ALTER TABLE inventory DROP COLUMN low_stock_threshold;
