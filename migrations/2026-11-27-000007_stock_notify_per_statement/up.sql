-- The read caches' notices, sent once per statement instead of once per row: a saga batch that
-- updates 1,500 stock rows ran the row trigger 1,500 times. Each notice carries up to 25 changes,
-- one per line ('<version> <product_id>', or 'deleted <product_id>'), well inside NOTIFY's
-- 8,000-byte payload for ids of up to 64 characters of up to 4 bytes. Still sent from the writing
-- transaction, so delivered after its commit, in commit order.
DROP TRIGGER inventory_notify_change ON inventory;
DROP FUNCTION inventory_notify_change();

CREATE FUNCTION inventory_notify_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('inventory_stock', chunk)
        FROM (SELECT string_agg('deleted ' || product_id, E'\n') AS chunk
              FROM (SELECT product_id, (row_number() OVER ()) / 25 AS g FROM old_rows) r
              GROUP BY g) c;
    ELSE
        PERFORM pg_notify('inventory_stock', chunk)
        FROM (SELECT string_agg(version::text || ' ' || product_id, E'\n') AS chunk
              FROM (SELECT version, product_id, (row_number() OVER ()) / 25 AS g FROM new_rows) r
              GROUP BY g) c;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER inventory_notify_inserts AFTER INSERT ON inventory
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION inventory_notify_changes();
CREATE TRIGGER inventory_notify_updates AFTER UPDATE ON inventory
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION inventory_notify_changes();
CREATE TRIGGER inventory_notify_deletes AFTER DELETE ON inventory
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION inventory_notify_changes();
