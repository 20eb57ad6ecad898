package outbound

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ClickHouseEntities reads entities from the projector's tables.
type ClickHouseEntities struct {
	Conn driver.Conn
}

// Changed reads the rows the writes produced from entity_changes (one row per stored write), and
// for a write the projector merged into a newer row or found applied already, the latest row
// once it is at least as new.
func (c *ClickHouseEntities) Changed(ctx context.Context, org, schema string, writes []EntityVersion) (map[EntityVersion]StoredEntity, error) {
	out := map[EntityVersion]StoredEntity{}
	const chunk = 1000
	for len(writes) > 0 {
		part := writes[:min(chunk, len(writes))]
		writes = writes[len(part):]
		lowest := ^uint64(0)
		seen := map[string]bool{}
		var ids []any
		for _, w := range part {
			lowest = min(lowest, w.Version)
			if !seen[w.ID] {
				seen[w.ID] = true
				ids = append(ids, w.ID)
			}
		}
		exact, err := c.read(ctx, `SELECT entity_id, version, deleted, attributes, unique_identifiers FROM entity_changes
			WHERE org_id = ? AND entity_schema = ? AND entity_id IN ? AND version >= ? LIMIT 1 BY entity_id, version`,
			org, schema, clickhouse.GroupSet{Value: ids}, lowest)
		if err != nil {
			return nil, err
		}
		var later []EntityVersion
		for _, w := range part {
			found := false
			for _, r := range exact[w.ID] {
				if r.Version == w.Version {
					out[w], found = r, true
				}
			}
			if !found {
				later = append(later, w)
			}
		}
		if len(later) == 0 {
			continue
		}
		var laterIDs []any
		for _, w := range later {
			laterIDs = append(laterIDs, w.ID)
		}
		latest, err := c.read(ctx, `SELECT entity_id, version, deleted, attributes, unique_identifiers FROM entities FINAL
			WHERE org_id = ? AND entity_schema = ? AND entity_id IN ?`, org, schema, clickhouse.GroupSet{Value: laterIDs})
		if err != nil {
			return nil, err
		}
		for _, w := range later {
			for _, r := range latest[w.ID] {
				if r.Version >= w.Version {
					out[w] = r
				}
			}
		}
	}
	return out, nil
}

// Entity reads one entity's latest row by id within the org.
func (c *ClickHouseEntities) Entity(ctx context.Context, org, id string) (string, StoredEntity, bool, error) {
	rows, err := c.Conn.Query(ctx, `SELECT entity_schema, version, deleted, attributes, unique_identifiers FROM entities FINAL
		WHERE org_id = ? AND entity_id = ? LIMIT 1`, org, id)
	if err != nil {
		return "", StoredEntity{}, false, fmt.Errorf("entity: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return "", StoredEntity{}, false, rows.Err()
	}
	var schema, attrs, uids string
	var e StoredEntity
	var deleted uint8
	if err := rows.Scan(&schema, &e.Version, &deleted, &attrs, &uids); err != nil {
		return "", StoredEntity{}, false, err
	}
	e.Deleted, e.Attributes, e.UniqueIdentifiers = deleted == 1, []byte(attrs), []byte(uids)
	return schema, e, true, nil
}

func (c *ClickHouseEntities) read(ctx context.Context, q string, args ...any) (map[string][]StoredEntity, error) {
	rows, err := c.Conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("entities: %w", err)
	}
	defer rows.Close()
	out := map[string][]StoredEntity{}
	for rows.Next() {
		var id, attrs, uids string
		var e StoredEntity
		var deleted uint8
		if err := rows.Scan(&id, &e.Version, &deleted, &attrs, &uids); err != nil {
			return nil, err
		}
		e.Deleted, e.Attributes, e.UniqueIdentifiers = deleted == 1, []byte(attrs), []byte(uids)
		out[id] = append(out[id], e)
	}
	return out, rows.Err()
}
