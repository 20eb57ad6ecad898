package projector

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Retention drops day partitions of raw_events older than rawDays and month partitions of the
// monitoring, entity-change and access tables older than monitoringDays (18.16 has no TTL).
func Retention(conn driver.Conn, rawDays, monitoringDays int, now func() time.Time) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		rawCutoff := now().AddDate(0, 0, -rawDays).Format("20060102")
		monCutoff := now().AddDate(0, 0, -monitoringDays).Format("200601")
		rows, err := conn.Query(ctx, `SELECT DISTINCT table, partition FROM system.parts
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
			if err := conn.Exec(ctx, "ALTER TABLE "+d[0]+" DROP PARTITION "+d[1]); err != nil {
				return fmt.Errorf("drop %s partition %s: %w", d[0], d[1], err)
			}
		}
		return nil
	}
}
