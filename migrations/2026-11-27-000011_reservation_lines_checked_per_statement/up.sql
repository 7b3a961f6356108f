-- reservation_lines' two foreign keys checked each line on its own: per line, a probe of
-- `reservations` and one of `inventory`, each with a row lock, through a query of its own. The saga
-- writes a batch's lines in one statement (1,500 for 500 3-line orders), so the checks were most
-- of the insert: 17 ms of it against 3.5 ms without them, measured on the benchmark's data. The
-- same rules are now checked once per statement, over the statement's lines (7 ms).
--
-- What the keys guaranteed, and what guarantees it now:
-- - a line names a reservation and a product that exist: checked after each insert or update of
--   lines (`reservation_lines_check`);
-- - a reservation deleted takes its lines (was ON DELETE CASCADE): `reservations_delete_lines`;
-- - a product with lines cannot be deleted or renamed, nor a reservation's order id changed:
--   refused row by row (`inventory_keep_lines`, `reservations_keep_lines`), as the keys did.
-- The keys also locked the rows they found until commit. The saga needs no such lock: every line
-- it writes belongs to a reservation it writes in the same transaction, and a product whose stock
-- row it has locked there, so a delete of either waits for the saga's commit, then sees the lines.
ALTER TABLE reservation_lines DROP CONSTRAINT reservation_lines_order_id_fkey;
ALTER TABLE reservation_lines DROP CONSTRAINT reservation_lines_product_id_fkey;

-- The probes are by key: a hash or merge join would read every reservation or product. Each
-- check raises SQLSTATE 23503 (foreign_key_violation), as the keys did.
CREATE FUNCTION reservation_lines_check() RETURNS trigger LANGUAGE plpgsql
    SET enable_hashjoin = off SET enable_mergejoin = off SET enable_seqscan = off SET enable_bitmapscan = off
AS $$
DECLARE
    missing text;
BEGIN
    SELECT l.order_id INTO missing FROM new_lines l
    WHERE NOT EXISTS (SELECT 1 FROM reservations r WHERE r.order_id = l.order_id) LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation USING MESSAGE = format('reservation line names order %s, which has no reservation', missing);
    END IF;
    SELECT l.product_id INTO missing FROM new_lines l
    WHERE NOT EXISTS (SELECT 1 FROM inventory i WHERE i.product_id = l.product_id) LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation USING MESSAGE = format('reservation line names product %s, which has no stock row', missing);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER reservation_lines_check_inserts AFTER INSERT ON reservation_lines
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION reservation_lines_check();
CREATE TRIGGER reservation_lines_check_updates AFTER UPDATE ON reservation_lines
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION reservation_lines_check();

CREATE FUNCTION reservations_delete_lines() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM reservation_lines l USING old_rows o WHERE l.order_id = o.order_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER reservations_delete_lines AFTER DELETE ON reservations
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION reservations_delete_lines();

CREATE FUNCTION reservations_keep_lines() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.order_id IS DISTINCT FROM OLD.order_id
       AND EXISTS (SELECT 1 FROM reservation_lines WHERE order_id = OLD.order_id) THEN
        RAISE foreign_key_violation
            USING MESSAGE = format('order %s has reservation lines; its order id cannot change', OLD.order_id);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER reservations_keep_lines BEFORE UPDATE OF order_id ON reservations
    FOR EACH ROW EXECUTE FUNCTION reservations_keep_lines();

CREATE FUNCTION inventory_keep_lines() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'DELETE' OR NEW.product_id IS DISTINCT FROM OLD.product_id)
       AND EXISTS (SELECT 1 FROM reservation_lines WHERE product_id = OLD.product_id) THEN
        RAISE foreign_key_violation
            USING MESSAGE = format('product %s has reservation lines; it cannot be deleted or renamed', OLD.product_id);
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER inventory_keep_lines BEFORE DELETE OR UPDATE OF product_id ON inventory
    FOR EACH ROW EXECUTE FUNCTION inventory_keep_lines();
