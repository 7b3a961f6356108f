-- One 3-line order's reservation, as the saga writes it: lock the three stock rows in product-id
-- order, bump each, record the hold and its lines, remember the event, queue the outcome. One
-- transaction. (Two picks of the same product are one line, as the service sums them.)
\set a random(0, :products - 1)
\set b random(0, :products - 1)
\set c random(0, :products - 1)
\set o random(1, 9000000000000000)
BEGIN;
SELECT product_id, version FROM inventory WHERE product_id IN ('p' || :a, 'p' || :b, 'p' || :c)
  ORDER BY product_id FOR UPDATE;
UPDATE inventory SET reserved = reserved + 1, version = version + 1, updated_at = now()
  WHERE product_id IN ('p' || :a, 'p' || :b, 'p' || :c) AND quantity - reserved >= 1;
INSERT INTO reservations (order_id, status, created_at, updated_at, expires_at, version)
  VALUES ('pg-' || :client_id || '-' || :o, 'RESERVED', now(), now(), now() + interval '30 minutes', 0);
INSERT INTO reservation_lines (order_id, product_id, quantity)
  SELECT DISTINCT 'pg-' || :client_id || '-' || :o, p, 1 FROM unnest(ARRAY['p' || :a, 'p' || :b, 'p' || :c]) AS p;
INSERT INTO processed_events (event_id, order_id, outcome) VALUES (gen_random_uuid(), 'pg-' || :client_id || '-' || :o, 'reserved');
INSERT INTO outbox (event_id, event_type, message_key, payload)
  VALUES (gen_random_uuid(), 'InventoryReservedEvent', 'pg-' || :client_id || '-' || :o,
          jsonb_build_object('eventType', 'InventoryReservedEvent', 'orderId', 'pg-' || :client_id || '-' || :o,
                             'items', jsonb_build_array(jsonb_build_object('productId', 'p' || :a, 'quantity', 1),
                                                        jsonb_build_object('productId', 'p' || :b, 'quantity', 1),
                                                        jsonb_build_object('productId', 'p' || :c, 'quantity', 1))));
COMMIT;
