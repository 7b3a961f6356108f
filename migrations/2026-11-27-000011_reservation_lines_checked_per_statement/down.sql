DROP TRIGGER inventory_keep_lines ON inventory;
DROP FUNCTION inventory_keep_lines();
DROP TRIGGER reservations_keep_lines ON reservations;
DROP FUNCTION reservations_keep_lines();
DROP TRIGGER reservations_delete_lines ON reservations;
DROP FUNCTION reservations_delete_lines();
DROP TRIGGER reservation_lines_check_updates ON reservation_lines;
DROP TRIGGER reservation_lines_check_inserts ON reservation_lines;
DROP FUNCTION reservation_lines_check();
ALTER TABLE reservation_lines ADD CONSTRAINT reservation_lines_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES reservations (order_id) ON DELETE CASCADE;
ALTER TABLE reservation_lines ADD CONSTRAINT reservation_lines_product_id_fkey
    FOREIGN KEY (product_id) REFERENCES inventory (product_id);
