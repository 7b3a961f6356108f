-- Listings page through stock in the byte order of the product id (collation "C"), whatever the
-- database's collation: a keyset cursor and a prefix (LIKE 'abc%') then walk this index, and a
-- page costs the same at a million products as at a thousand. Nothing indexes quantity, reserved
-- or updated_at: an index on a column the saga updates would end its HOT updates.
CREATE INDEX inventory_listing ON inventory ((product_id COLLATE "C"));
