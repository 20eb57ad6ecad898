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

// WriteEntities inserts entity writes.
func (s *ClickHouseSink) WriteEntities(ctx context.Context, rows []envelope.EntityWrite) error {
	b, err := s.Conn.PrepareBatch(ctx, `INSERT INTO entities (org_id, entity_schema, entity_id, version, deleted,
		unique_identifiers, attributes, integration_id, use_case_id, event_id, correlation_id, written_at_ms)`)
	if err != nil {
		return fmt.Errorf("prepare entities batch: %w", err)
	}
	defer b.Abort()
	for i := range rows {
		r := &rows[i]
		var deleted uint8
		if r.Op == envelope.OpDelete {
			deleted = 1
		}
		if err := b.Append(r.OrgID, r.EntitySchema, r.EntityID, r.Version, deleted,
			string(r.UniqueIdentifiers), string(r.Attributes), r.IntegrationID, r.UseCaseID, r.EventID,
			r.CorrelationID, uint64(r.WrittenAtMs)); err != nil {
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
