-- Optimistic update of one hot row, the way a naive service would do it:
-- read the version, then update only if nobody changed it meanwhile.
SELECT version AS v FROM inventory WHERE product_id = 'hot' \gset
UPDATE inventory SET reserved = reserved + 1, version = version + 1, updated_at = now()
  WHERE product_id = 'hot' AND version = :v AND quantity - reserved >= 1;
