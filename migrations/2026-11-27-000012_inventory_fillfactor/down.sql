ALTER TABLE inventory RESET (fillfactor);
