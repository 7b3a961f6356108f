DROP INDEX inventory_listing;
