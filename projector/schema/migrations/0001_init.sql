-- Entity latest state. One row per write; ReplacingMergeTree keeps the highest version per entity,
-- and readers use FINAL (or argMax) so a write projected twice is never seen twice.
-- Deletes are tombstones (deleted = 1) that queries filter after FINAL.
CREATE TABLE IF NOT EXISTS entities (
    org_id             String,
    entity_schema      String,
    entity_id          String,
    version            UInt64,
    deleted            UInt8,
    unique_identifiers String,
    attributes         String,
    integration_id     String,
    use_case_id        String,
    event_id           String,
    correlation_id     String,
    written_at_ms      UInt64,
    written_at         DateTime DEFAULT toDateTime(intDiv(written_at_ms, 1000))
) ENGINE = ReplacingMergeTree(version)
ORDER BY (org_id, entity_schema, entity_id);

-- Monitoring trail (MonitoringEventV2). The id is derived from the event id and the stage, so a
-- row inserted twice carries the same sorting key and collapses; readers use FINAL.
CREATE TABLE IF NOT EXISTS monitoring_events (
    id             String,
    org_id         String,
    integration_id String,
    event_id       String,
    correlation_id String,
    use_case_id    String,
    use_case_type  String,
    level          Enum8('success' = 1, 'error' = 2, 'warning' = 3, 'skipped' = 4, 'info' = 5),
    code           String,
    message        String,
    detail         String,
    created_at_ms  UInt64,
    created_at     DateTime DEFAULT toDateTime(intDiv(created_at_ms, 1000))
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(created_at)
ORDER BY (org_id, integration_id, created_at, id);
