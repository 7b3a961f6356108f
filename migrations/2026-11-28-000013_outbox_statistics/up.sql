-- Autovacuum analyses the outbox about once a minute while orders flow (every tenth of the table
-- written). ANALYZE reads a sample of up to 30,000 rows and builds statistics for every column,
-- and for the JSON payload and headers that is most of its work: on 111,783 rows, 199-216 ms
-- with these columns and 52-54 ms without. No query filters, joins or sorts on them (the relay
-- selects by published_at and id, the retention sweep by published_at, the insert's uniqueness
-- check needs no statistics), so the planner has no use for them. On a machine the database
-- shares with the service, the analysis took that time from the saga: with the outbox analysed
-- every 2 s through the benchmark's paced window, its outcome p99 was 95.5 and 68.4 ms, and 43.3
-- and 46.6 ms without the JSON columns' statistics (36.6 and 38.3 ms with no analysis;
-- docs/performance.md, tenth pass).
ALTER TABLE outbox
    ALTER COLUMN payload SET STATISTICS 0,
    ALTER COLUMN headers SET STATISTICS 0,
    ALTER COLUMN message_key SET STATISTICS 0,
    ALTER COLUMN event_type SET STATISTICS 0;
