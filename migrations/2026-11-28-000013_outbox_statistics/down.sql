ALTER TABLE outbox
    ALTER COLUMN payload SET STATISTICS -1,
    ALTER COLUMN headers SET STATISTICS -1,
    ALTER COLUMN message_key SET STATISTICS -1,
    ALTER COLUMN event_type SET STATISTICS -1;
-- Statistics already gathered stay until the next ANALYZE.
