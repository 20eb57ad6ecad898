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

// Changed reads the rows the writes produced from entity_changes (one row per stored write),
// and for writes the projector merged into a newer row or found applied already, the latest
// row once it is at least as new.
func (c *ClickHouseEntities) Changed(ctx context.Context, org, schema string, versions map[string]uint64) (map[string]StoredEntity, error) {
	out := map[string]StoredEntity{}
	const chunk = 1000
	ids := make([]any, 0, len(versions))
	for id := range versions {
		ids = append(ids, id)
	}
	for len(ids) > 0 {
		part := ids[:min(chunk, len(ids))]
		ids = ids[len(part):]
		lowest := ^uint64(0)
		for _, id := range part {
			lowest = min(lowest, versions[id.(string)])
		}
		exact, err := c.read(ctx, `SELECT entity_id, version, deleted, attributes, unique_identifiers FROM entity_changes
			WHERE org_id = ? AND entity_schema = ? AND entity_id IN ? AND version >= ? LIMIT 1 BY entity_id, version`,
			org, schema, clickhouse.GroupSet{Value: part}, lowest)
		if err != nil {
			return nil, err
		}
		var later []any
		for _, id := range part {
			rows := exact[id.(string)]
			want := versions[id.(string)]
			found := false
			for _, r := range rows {
				if r.Version == want {
					out[id.(string)], found = r, true
				}
			}
			if !found {
				later = append(later, id)
			}
		}
		if len(later) == 0 {
			continue
		}
		latest, err := c.read(ctx, `SELECT entity_id, version, deleted, attributes, unique_identifiers FROM entities FINAL
			WHERE org_id = ? AND entity_schema = ? AND entity_id IN ?`, org, schema, clickhouse.GroupSet{Value: later})
		if err != nil {
			return nil, err
		}
		for _, id := range later {
			for _, r := range latest[id.(string)] {
				if r.Version >= versions[id.(string)] {
					out[id.(string)] = r
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
