-- Every change of a stock row notifies the instances' read caches, from the writing transaction
-- (so after its commit, in commit order), whoever writes: the service, or an operator's SQL.
-- Payload: '<version> <product_id>', or 'deleted <product_id>'.
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
