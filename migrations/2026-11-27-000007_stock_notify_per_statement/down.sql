DROP TRIGGER inventory_notify_inserts ON inventory;
DROP TRIGGER inventory_notify_updates ON inventory;
DROP TRIGGER inventory_notify_deletes ON inventory;
DROP FUNCTION inventory_notify_changes();

CREATE FUNCTION inventory_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('inventory_stock', 'deleted ' || OLD.product_id);
    ELSE
        PERFORM pg_notify('inventory_stock', NEW.version::text || ' ' || NEW.product_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER inventory_notify_change
    AFTER INSERT OR UPDATE OR DELETE ON inventory
    FOR EACH ROW EXECUTE FUNCTION inventory_notify_change();
