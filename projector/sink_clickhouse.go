package projector

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/erpstream/erpstream/internal/envelope"
)

// ClickHouseSink inserts batches with the native protocol (PrepareBatch/Append/Send).
type ClickHouseSink struct {
	Conn driver.Conn
}

// WriteEntities inserts entity writes.
func (s *ClickHouseSink) WriteEntities(ctx context.Context, rows []envelope.EntityWrite) error {
	b, err := s.Conn.PrepareBatch(ctx, `INSERT INTO entities (org_id, entity_schema, entity_id, version, deleted,
		unique_identifiers, attributes, integration_id, use_case_id, event_id, correlation_id, written_at_ms,
		attribute_versions)`)
	if err != nil {
		return fmt.Errorf("prepare entities batch: %w", err)
	}
	defer b.Abort()
	for i := range rows {
		r := &rows[i]
		var deleted uint8
		if r.Op == envelope.OpDelete || r.Op == envelope.OpPurge {
			deleted = 1
		}
		if err := b.Append(r.OrgID, r.EntitySchema, r.EntityID, r.Version, deleted,
			string(r.UniqueIdentifiers), string(r.Attributes), r.IntegrationID, r.UseCaseID, r.EventID,
			r.CorrelationID, uint64(r.WrittenAtMs), string(r.AttributeVersions)); err != nil {
			return fmt.Errorf("append entity row: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert entities: %w", err)
	}
	return nil
}

// WriteMonitoring inserts monitoring events.
func (s *ClickHouseSink) WriteMonitoring(ctx context.Context, rows []envelope.MonitoringEvent) error {
	b, err := s.Conn.PrepareBatch(ctx, `INSERT INTO monitoring_events (id, org_id, integration_id, event_id,
		correlation_id, use_case_id, use_case_type, level, code, message, detail, created_at_ms)`)
	if err != nil {
		return fmt.Errorf("prepare monitoring batch: %w", err)
	}
	defer b.Abort()
	for i := range rows {
		r := &rows[i]
		detail := string(r.Detail)
		if detail == "" {
			detail = "null"
		}
		if err := b.Append(r.ID, r.OrgID, r.IntegrationID, r.EventID, r.CorrelationID, r.UseCaseID,
			r.UseCaseType, string(r.Level), r.Code, r.Message, detail, uint64(r.CreatedAtMs)); err != nil {
			return fmt.Errorf("append monitoring row: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert monitoring events: %w", err)
	}
	return nil
}

// WriteRawEvents inserts received events.
func (s *ClickHouseSink) WriteRawEvents(ctx context.Context, rows []envelope.Event) error {
	b, err := s.Conn.PrepareBatch(ctx, `INSERT INTO raw_events (org_id, integration_id, event_id, use_case_id, use_case_slug,
		event_name, event_type, timestamp, format, payload, deduplication_id, correlation_id, replay, received_at_us)`)
	if err != nil {
		return fmt.Errorf("prepare raw events batch: %w", err)
	}
	defer b.Abort()
	for i := range rows {
		r := &rows[i]
		var replay uint8
		if r.Replay {
			replay = 1
		}
		if err := b.Append(r.OrgID, r.IntegrationID, r.EventID, r.UseCaseID, r.UseCaseSlug, r.EventName, r.EventType,
			r.Timestamp, r.Format, string(r.Payload), r.DeduplicationID, r.CorrelationID, replay, uint64(r.ReceivedAtUs)); err != nil {
			return fmt.Errorf("append raw event: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert raw events: %w", err)
	}
	return nil
}

// WriteAccessLogs inserts API access log rows.
func (s *ClickHouseSink) WriteAccessLogs(ctx context.Context, rows []envelope.AccessLog) error {
	b, err := s.Conn.PrepareBatch(ctx, `INSERT INTO access_logs (org_id, request_id, token_id, service, method, path, route,
		status, latency_ms, integration_id, at_ms)`)
	if err != nil {
		return fmt.Errorf("prepare access log batch: %w", err)
	}
	defer b.Abort()
	for i := range rows {
		r := &rows[i]
		if err := b.Append(r.OrgID, r.RequestID, r.TokenID, r.Service, r.Method, r.Path, r.Route, uint16(r.Status),
			uint32(r.LatencyMs), r.IntegrationID, uint64(r.AtMs)); err != nil {
			return fmt.Errorf("append access log: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert access logs: %w", err)
	}
	return nil
}

// ExistingMonitoring finds which rows are stored already, by id within the rows' time span.
func (s *ClickHouseSink) ExistingMonitoring(ctx context.Context, rows []envelope.MonitoringEvent) (map[string]bool, error) {
	found := map[string]bool{}
	// Ids are bound into the query text (18.16 has no server-side parameters) and a query may be
	// at most max_query_size (256 KiB) long, so ask in chunks of ~80 KB.
	const chunk = 2000
	for len(rows) > 0 {
		part := rows[:min(chunk, len(rows))]
		rows = rows[len(part):]
		ids := make([]string, len(part))
		minMs, maxMs := part[0].CreatedAtMs, part[0].CreatedAtMs
		for i, r := range part {
			ids[i] = r.ID
			minMs, maxMs = min(minMs, r.CreatedAtMs), max(maxMs, r.CreatedAtMs)
		}
		q, err := s.Conn.Query(ctx, `SELECT id FROM monitoring_events
			WHERE created_at >= toDateTime(?) AND created_at <= toDateTime(?) AND has(?, id)`,
			minMs/1000, maxMs/1000+1, ids)
		if err != nil {
			return nil, fmt.Errorf("existing monitoring rows: %w", err)
		}
		for q.Next() {
			var id string
			if err := q.Scan(&id); err != nil {
				q.Close()
				return nil, err
			}
			found[id] = true
		}
		q.Close()
		if err := q.Err(); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// CurrentEntities reads the latest row of each entity, in chunks that keep the query under
// max_query_size; the org and schema prefix and the IN list use the table's primary key.
func (s *ClickHouseSink) CurrentEntities(ctx context.Context, ids map[EntityScope][]string) (map[string]StoredEntity, error) {
	out := map[string]StoredEntity{}
	const chunk = 2000
	for scope, list := range ids {
		for len(list) > 0 {
			part := list[:min(chunk, len(list))]
			list = list[len(part):]
			set := make([]any, len(part))
			for i, id := range part {
				set[i] = id
			}
			rows, err := s.Conn.Query(ctx, `SELECT entity_id, version, deleted, unique_identifiers, attributes, attribute_versions FROM entities FINAL
				WHERE org_id = ? AND entity_schema = ? AND entity_id IN ?`, scope.OrgID, scope.Schema, clickhouse.GroupSet{Value: set})
			if err != nil {
				return nil, fmt.Errorf("current entities: %w", err)
			}
			for rows.Next() {
				var id, uids, attrs, versions string
				var version uint64
				var deleted uint8
				if err := rows.Scan(&id, &version, &deleted, &uids, &attrs, &versions); err != nil {
					rows.Close()
					return nil, err
				}
				out[id] = StoredEntity{Version: version, Deleted: deleted == 1, UniqueIdentifiers: []byte(uids), Attributes: []byte(attrs),
					AttributeVersions: []byte(versions)}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// Retention drops day partitions of raw_events older than rawDays and month partitions of the
// monitoring, entity-change and access tables older than monitoringDays (18.16 has no TTL).
func (s *ClickHouseSink) Retention(rawDays, monitoringDays int, now func() time.Time) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		rawCutoff := now().AddDate(0, 0, -rawDays).Format("20060102")
		monCutoff := now().AddDate(0, 0, -monitoringDays).Format("200601")
		rows, err := s.Conn.Query(ctx, `SELECT DISTINCT table, partition FROM system.parts
			WHERE database = currentDatabase() AND active AND has(?, table)`,
			[]string{"raw_events", "monitoring_events", "monitoring_minute", "monitoring_hour", "entity_changes", "access_logs"})
		if err != nil {
			return fmt.Errorf("list partitions: %w", err)
		}
		var drops [][2]string
		for rows.Next() {
			var table, partition string
			if err := rows.Scan(&table, &partition); err != nil {
				rows.Close()
				return err
			}
			cutoff := monCutoff
			if table == "raw_events" {
				cutoff = rawCutoff
			}
			if len(partition) == len(cutoff) && partition < cutoff {
				drops = append(drops, [2]string{table, partition})
			}
		}
		rows.Close()
		for _, d := range drops {
			// Table names come from the fixed list above and partition ids from system.parts.
			if err := s.Conn.Exec(ctx, "ALTER TABLE "+d[0]+" DROP PARTITION "+d[1]); err != nil {
				return fmt.Errorf("drop %s partition %s: %w", d[0], d[1], err)
			}
		}
		return nil
	}
}
