-- One order's reservation, as the service's saga writes it: lock and bump the
-- stock row (optimistic version check), record the hold and its line, remember
-- the consumed event, and queue the outcome in the outbox. One transaction.
\set p random(0, :products - 1)
\set o random(1, 9000000000000000)
BEGIN;
SELECT version AS v FROM inventory WHERE product_id = 'p' || :p FOR UPDATE \gset
UPDATE inventory SET reserved = reserved + 1, version = version + 1, updated_at = now()
  WHERE product_id = 'p' || :p AND version = :v AND quantity - reserved >= 1;
INSERT INTO reservations (order_id, status, created_at, updated_at, expires_at, version)
  VALUES ('pg-' || :client_id || '-' || :o, 'RESERVED', now(), now(), now() + interval '30 minutes', 0);
INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES ('pg-' || :client_id || '-' || :o, 'p' || :p, 1);
INSERT INTO processed_events (event_id, order_id, outcome) VALUES (gen_random_uuid(), 'pg-' || :client_id || '-' || :o, 'reserved');
INSERT INTO outbox (event_id, event_type, message_key, payload)
  VALUES (gen_random_uuid(), 'InventoryReservedEvent', 'pg-' || :client_id || '-' || :o,
          jsonb_build_object('eventType', 'InventoryReservedEvent', 'orderId', 'pg-' || :client_id || '-' || :o,
                             'items', jsonb_build_array(jsonb_build_object('productId', 'p' || :p, 'quantity', 1))));
COMMIT;
