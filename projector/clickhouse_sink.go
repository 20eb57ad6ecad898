package projector

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/erpstream/erpstream/internal/envelope"
)

// ClickHouseSink inserts batches with the native protocol (PrepareBatch/Append/Send).
type ClickHouseSink struct {
	Conn driver.Conn
}

// insert sends rows as one batch: stmt names the columns, columns gives a row's values in
// that order.
func insert[T any](ctx context.Context, conn driver.Conn, what, stmt string, rows []T, columns func(*T) []any) error {
	b, err := conn.PrepareBatch(ctx, stmt)
	if err != nil {
		return fmt.Errorf("prepare %s batch: %w", what, err)
	}
	defer b.Abort()
	for i := range rows {
		if err := b.Append(columns(&rows[i])...); err != nil {
			return fmt.Errorf("append %s row: %w", what, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %s: %w", what, err)
	}
	return nil
}

func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// WriteEntities inserts entity writes.
func (s *ClickHouseSink) WriteEntities(ctx context.Context, rows []envelope.EntityWrite) error {
	return insert(ctx, s.Conn, "entities", `INSERT INTO entities (org_id, entity_schema, entity_id, version, deleted,
		unique_identifiers, attributes, integration_id, use_case_id, event_id, correlation_id, written_at_ms,
		attribute_versions)`, rows, func(r *envelope.EntityWrite) []any {
		deleted := flag(r.Op == envelope.OpDelete || r.Op == envelope.OpPurge)
		return []any{r.OrgID, r.EntitySchema, r.EntityID, r.Version, deleted, string(r.UniqueIdentifiers), string(r.Attributes),
			r.IntegrationID, r.UseCaseID, r.EventID, r.CorrelationID, uint64(r.WrittenAtMs), string(r.AttributeVersions)}
	})
}

// WriteMonitoring inserts monitoring events.
func (s *ClickHouseSink) WriteMonitoring(ctx context.Context, rows []envelope.MonitoringEvent) error {
	return insert(ctx, s.Conn, "monitoring events", `INSERT INTO monitoring_events (id, org_id, integration_id, event_id,
		correlation_id, use_case_id, use_case_type, level, code, message, detail, created_at_ms)`, rows, func(r *envelope.MonitoringEvent) []any {
		detail := string(r.Detail)
		if detail == "" {
			detail = "null"
		}
		return []any{r.ID, r.OrgID, r.IntegrationID, r.EventID, r.CorrelationID, r.UseCaseID, r.UseCaseType, string(r.Level), r.Code,
			r.Message, detail, uint64(r.CreatedAtMs)}
	})
}

// WriteRawEvents inserts received events.
func (s *ClickHouseSink) WriteRawEvents(ctx context.Context, rows []envelope.Event) error {
	return insert(ctx, s.Conn, "raw events", `INSERT INTO raw_events (org_id, integration_id, event_id, use_case_id, use_case_slug,
		event_name, event_type, timestamp, format, payload, deduplication_id, correlation_id, replay, received_at_us)`, rows, func(r *envelope.Event) []any {
		return []any{r.OrgID, r.IntegrationID, r.EventID, r.UseCaseID, r.UseCaseSlug, r.EventName, r.EventType, r.Timestamp, r.Format,
			string(r.Payload), r.DeduplicationID, r.CorrelationID, flag(r.Replay), uint64(r.ReceivedAtUs)}
	})
}

// WriteAccessLogs inserts API access log rows.
func (s *ClickHouseSink) WriteAccessLogs(ctx context.Context, rows []envelope.AccessLog) error {
	return insert(ctx, s.Conn, "access logs", `INSERT INTO access_logs (org_id, request_id, token_id, service, method, path, route,
		status, latency_ms, integration_id, at_ms)`, rows, func(r *envelope.AccessLog) []any {
		return []any{r.OrgID, r.RequestID, r.TokenID, r.Service, r.Method, r.Path, r.Route, uint16(r.Status), uint32(r.LatencyMs),
			r.IntegrationID, uint64(r.AtMs)}
	})
}
