// Package schema owns erpstream's ClickHouse schema: numbered migrations embedded in the binary,
// applied in order and recorded in schema_migrations. Every statement runs on ClickHouse 18.16
// and on a current server.
package schema

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed migrations/*.sql
var files embed.FS

// Migration is one numbered file.
type Migration struct {
	Version    uint32
	Name       string
	Statements []string
}

// Migrations returns the embedded migrations in order.
func Migrations() ([]Migration, error) {
	entries, err := files.ReadDir("migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".sql")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", e.Name())
		}
		body, err := files.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: uint32(v), Name: name, Statements: splitStatements(string(body))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("two migrations numbered %d", out[i].Version)
		}
	}
	return out, nil
}

// splitStatements splits on semicolons that end a line, dropping comment-only lines.
func splitStatements(body string) []string {
	var stmts []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || trimmed == "" {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			stmts = append(stmts, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}

// Migrate applies every migration newer than the recorded version.
func Migrate(ctx context.Context, conn driver.Conn, log *slog.Logger) error {
	migs, err := Migrations()
	if err != nil {
		return err
	}
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32, name String, applied_at DateTime
	) ENGINE = MergeTree ORDER BY version`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var current uint32
	row := conn.QueryRow(ctx, "SELECT max(version) FROM schema_migrations")
	if err := row.Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for _, m := range migs {
		if m.Version <= current {
			continue
		}
		for i, stmt := range m.Statements {
			if table, column, ok := addsColumn(stmt); ok {
				var n uint64
				if err := conn.QueryRow(ctx, `SELECT count() FROM system.columns WHERE database = currentDatabase()
					AND table = ? AND name = ?`, table, column).Scan(&n); err != nil {
					return fmt.Errorf("migration %s statement %d: %w", m.Name, i+1, err)
				}
				if n > 0 {
					continue // added before the migration was recorded
				}
			}
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migration %s statement %d: %w", m.Name, i+1, err)
			}
		}
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, applied_at)")
		if err != nil {
			return fmt.Errorf("record migration %s: %w", m.Name, err)
		}
		if err := batch.Append(m.Version, m.Name, time.Now().UTC()); err != nil {
			return fmt.Errorf("record migration %s: %w", m.Name, err)
		}
		if err := batch.Send(); err != nil {
			return fmt.Errorf("record migration %s: %w", m.Name, err)
		}
		log.Info("applied clickhouse migration", "version", m.Version, "name", m.Name)
	}
	return nil
}

var addColumn = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+(\w+)\s+ADD\s+COLUMN\s+(\w+)\s`)

// addsColumn recognises ALTER TABLE t ADD COLUMN c …: ClickHouse 18.16 has no IF NOT EXISTS
// there, so the migrator checks system.columns itself.
func addsColumn(stmt string) (table, column string, ok bool) {
	m := addColumn.FindStringSubmatch(stmt)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// Applied returns the recorded schema version and the newest this binary carries.
func Applied(ctx context.Context, conn driver.Conn) (current, latest uint32, err error) {
	migs, err := Migrations()
	if err != nil {
		return 0, 0, err
	}
	if len(migs) > 0 {
		latest = migs[len(migs)-1].Version
	}
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&current); err != nil {
		return 0, latest, fmt.Errorf("read schema version: %w", err)
	}
	return current, latest, nil
}
