-- The query behind GET /api/inventory/{productId}.
\set p random(0, :products - 1)
SELECT id, product_id, quantity, reserved, version, updated_at FROM inventory WHERE product_id = 'p' || :p;
