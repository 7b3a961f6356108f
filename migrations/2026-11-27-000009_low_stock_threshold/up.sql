-- A product's own low-stock threshold (NULL: the configured default applies). Below it, and
-- above 0, the product is low on stock; availability events mark the moves between levels.
-- Not indexed: the saga updates inventory rows and keeps its HOT updates.
ALTER TABLE inventory ADD COLUMN low_stock_threshold integer CHECK (low_stock_threshold >= 0);
-- An idempotent request's stored answer shows the threshold too.
ALTER TABLE idempotency_keys ADD COLUMN low_stock_threshold integer;
