-- Raw received events, kept for replay, queryEvents and trace heads (14 days; day partitions are
-- dropped by the projector's retention). Deterministic (org, integration, received_at, event_id)
-- keys: a row inserted twice collapses.
CREATE TABLE IF NOT EXISTS raw_events (
    org_id           String,
    integration_id   String,
    event_id         String,
    use_case_id      String,
    use_case_slug    String,
    event_name       String,
    event_type       String,
    timestamp        String,
    format           String,
    payload          String,
    deduplication_id String,
    correlation_id   String,
    replay           UInt8,
    received_at_us   UInt64,
    received_at      DateTime DEFAULT toDateTime(intDiv(received_at_us, 1000000))
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (org_id, integration_id, received_at, event_id);

-- Every entity write, for analysts (the latest state is in entities).
CREATE TABLE IF NOT EXISTS entity_changes (
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
    written_at         DateTime
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(written_at)
ORDER BY (org_id, entity_schema, entity_id, version, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS entity_changes_mv TO entity_changes AS
SELECT org_id, entity_schema, entity_id, version, deleted, unique_identifiers, attributes, integration_id,
       use_case_id, event_id, correlation_id, written_at_ms, written_at
FROM entities;

-- Per-minute and per-hour counts of monitoring events. They are fed once per stored row: the
-- projector never inserts a monitoring row twice (it checks what a crashed batch already stored).
CREATE TABLE IF NOT EXISTS monitoring_minute (
    org_id         String,
    integration_id String,
    minute         DateTime,
    use_case_type  String,
    use_case_id    String,
    level          Enum8('success' = 1, 'error' = 2, 'warning' = 3, 'skipped' = 4, 'info' = 5),
    code           String,
    events         AggregateFunction(count),
    last_at_ms     AggregateFunction(max, UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (org_id, integration_id, minute, use_case_type, use_case_id, level, code);

CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_minute_mv TO monitoring_minute AS
SELECT org_id, integration_id, toStartOfMinute(created_at) AS minute, use_case_type, use_case_id, level, code,
       countState() AS events, maxState(created_at_ms) AS last_at_ms
FROM monitoring_events
GROUP BY org_id, integration_id, minute, use_case_type, use_case_id, level, code;

CREATE TABLE IF NOT EXISTS monitoring_hour (
    org_id         String,
    integration_id String,
    hour           DateTime,
    use_case_type  String,
    use_case_id    String,
    level          Enum8('success' = 1, 'error' = 2, 'warning' = 3, 'skipped' = 4, 'info' = 5),
    code           String,
    events         AggregateFunction(count),
    last_at_ms     AggregateFunction(max, UInt64)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (org_id, integration_id, hour, use_case_type, use_case_id, level, code);

CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_hour_mv TO monitoring_hour AS
SELECT org_id, integration_id, toStartOfHour(created_at) AS hour, use_case_type, use_case_id, level, code,
       countState() AS events, maxState(created_at_ms) AS last_at_ms
FROM monitoring_events
GROUP BY org_id, integration_id, hour, use_case_type, use_case_id, level, code;

-- Every API call of an org: route, status, latency, token id (never the token).
CREATE TABLE IF NOT EXISTS access_logs (
    org_id        String,
    request_id    String,
    token_id      String,
    service       String,
    method        String,
    path          String,
    route         String,
    status        UInt16,
    latency_ms    UInt32,
    integration_id String,
    at_ms         UInt64,
    at            DateTime DEFAULT toDateTime(intDiv(at_ms, 1000))
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (org_id, at, request_id);
