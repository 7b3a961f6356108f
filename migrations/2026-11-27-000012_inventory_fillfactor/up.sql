-- Every reservation, release and add updates its product's row. None of those updates changes an
-- indexed column, so PostgreSQL can write the new row version in the same page and skip the
-- indexes (a HOT update), but only where the page has room. At the default fillfactor (100) a
-- page filled by inserts has none: the first update of each row then writes a new entry in all
-- three of the table's indexes. With many products that is most updates (the benchmark's run
-- over 1,000,000 products: 10,655 of 20,001 updates were HOT). Pages written from now on keep a
-- fifth free. Rows already stored move to such pages as they are updated, or all at once with
-- `VACUUM FULL inventory` (it locks the table; see docs/runbook.md).
ALTER TABLE inventory SET (fillfactor = 80);
