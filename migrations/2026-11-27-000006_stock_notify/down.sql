DROP TRIGGER inventory_notify_change ON inventory;
DROP FUNCTION inventory_notify_change();
