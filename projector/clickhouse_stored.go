package projector

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/erpstream/erpstream/internal/envelope"
)

// ClickHouseStored reads back what the projector stored.
type ClickHouseStored struct {
	Conn driver.Conn
}

// ExistingMonitoring finds which rows are stored already, by id within the rows' time span.
func (s *ClickHouseStored) ExistingMonitoring(ctx context.Context, rows []envelope.MonitoringEvent) (map[string]bool, error) {
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
func (s *ClickHouseStored) CurrentEntities(ctx context.Context, ids map[EntityScope][]string) (map[string]StoredEntity, error) {
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
