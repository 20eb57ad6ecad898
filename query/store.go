package query

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/erpstream/erpstream/internal/envelope"
)

// ClickHouseStore answers monitoring queries from ClickHouse. Every statement binds its values
// client-side (18.16 has no server-side parameters) and reads with FINAL, so a row the projector
// wrote twice counts once.
type ClickHouseStore struct {
	Conn driver.Conn
}

// Stats counts monitoring events per level in [from, to].
func (s *ClickHouseStore) Stats(ctx context.Context, f Filter) (Stats, error) {
	rows, err := s.Conn.Query(ctx, `
		SELECT toString(level) AS lvl, count() AS n, countIf(code = 'ACK_TIMEOUT') AS acks,
		       max(created_at_ms) AS last_ms
		FROM monitoring_events FINAL
		WHERE org_id = ? AND integration_id = ?
		  AND created_at >= toDateTime(?) AND created_at <= toDateTime(?)
		  AND created_at_ms >= ? AND created_at_ms <= ?
		GROUP BY lvl`,
		f.OrgID, f.IntegrationID, f.From.Unix(), f.To.Unix(), uint64(f.From.UnixMilli()), uint64(f.To.UnixMilli()))
	if err != nil {
		return Stats{}, fmt.Errorf("stats query: %w", err)
	}
	defer rows.Close()
	var st Stats
	for rows.Next() {
		var lvl string
		var n, acks, lastMs uint64
		if err := rows.Scan(&lvl, &n, &acks, &lastMs); err != nil {
			return Stats{}, fmt.Errorf("stats scan: %w", err)
		}
		st.Total += n
		st.AckTimeouts += acks
		switch envelope.Level(lvl) {
		case envelope.LevelSuccess:
			st.Success += n
		case envelope.LevelError:
			st.Error += n
			t := time.UnixMilli(int64(lastMs)).UTC()
			st.LastErrorAt = &t
		case envelope.LevelWarning:
			st.Warning += n
		default: // skipped and info: the 0.58.0 API has no info level
			st.Skipped += n
		}
	}
	return st, rows.Err()
}

// Events lists monitoring events newest first, after the cursor when one is given.
func (s *ClickHouseStore) Events(ctx context.Context, f Filter, limit int, after *Cursor) ([]envelope.MonitoringEvent, error) {
	levels := f.Levels
	if len(levels) == 0 {
		levels = []string{"success", "error", "warning", "skipped", "info"}
	}
	cursorMs, cursorID := uint64(f.To.UnixMilli())+1, ""
	if after != nil {
		cursorMs, cursorID = uint64(after.CreatedAtMs), after.ID
	}
	rows, err := s.Conn.Query(ctx, `
		SELECT id, org_id, integration_id, event_id, correlation_id, use_case_id, use_case_type,
		       toString(level), code, message, detail, created_at_ms
		FROM monitoring_events FINAL
		WHERE org_id = ? AND integration_id = ?
		  AND created_at >= toDateTime(?) AND created_at <= toDateTime(?)
		  AND created_at_ms >= ? AND created_at_ms <= ?
		  AND has(?, toString(level))
		  AND (created_at_ms, id) < (?, ?)
		ORDER BY created_at_ms DESC, id DESC
		LIMIT ?`,
		f.OrgID, f.IntegrationID, f.From.Unix(), f.To.Unix(), uint64(f.From.UnixMilli()), uint64(f.To.UnixMilli()),
		levels, cursorMs, cursorIDOrMax(cursorID), limit)
	if err != nil {
		return nil, fmt.Errorf("events query: %w", err)
	}
	defer rows.Close()
	var out []envelope.MonitoringEvent
	for rows.Next() {
		var m envelope.MonitoringEvent
		var lvl, detail string
		var created uint64
		if err := rows.Scan(&m.ID, &m.OrgID, &m.IntegrationID, &m.EventID, &m.CorrelationID, &m.UseCaseID,
			&m.UseCaseType, &lvl, &m.Code, &m.Message, &detail, &created); err != nil {
			return nil, fmt.Errorf("events scan: %w", err)
		}
		m.Level = envelope.Level(lvl)
		m.CreatedAtMs = int64(created)
		if detail != "" && detail != "null" {
			m.Detail = json.RawMessage(detail)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// cursorIDOrMax makes the first page include every id of the newest millisecond.
func cursorIDOrMax(id string) string {
	if id == "" {
		return "\xff"
	}
	return id
}
