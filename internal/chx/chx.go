// Package chx opens ClickHouse connections the way every erpstream service needs them: the native
// protocol (the HTTP one does not work with ClickHouse 18.16), LZ4 on the wire, bounded pools.
package chx

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Config is how erpstream reaches ClickHouse.
type Config struct {
	Addr     string // CLICKHOUSE_ADDR, host:port of the native protocol, default 127.0.0.1:19000
	Database string // CLICKHOUSE_DATABASE, default erpstream
	User     string // CLICKHOUSE_USER, default "default"
	Password string // CLICKHOUSE_PASSWORD
	// TLS reaches the secure native port (CLICKHOUSE_TLS, CLICKHOUSE_TLS_CA_FILE, …; nil: plaintext).
	TLS *tls.Config
}

// Open connects to the configured database, creating it first when it does not exist.
func Open(ctx context.Context, cfg Config) (driver.Conn, error) {
	if cfg.Database == "" {
		cfg.Database = "erpstream"
	}
	boot, err := open(cfg, "default")
	if err != nil {
		return nil, err
	}
	defer boot.Close()
	if err := boot.Ping(ctx); err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.Addr, err)
	}
	if err := boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(cfg.Database)); err != nil {
		return nil, fmt.Errorf("create database %s: %w", cfg.Database, err)
	}
	conn, err := open(cfg, cfg.Database)
	if err != nil {
		return nil, err
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.Addr, err)
	}
	return conn, nil
}

func open(cfg Config, db string) (driver.Conn, error) {
	user := cfg.User
	if user == "" {
		user = "default"
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:             []string{cfg.Addr},
		Protocol:         clickhouse.Native,
		Auth:             clickhouse.Auth{Database: db, Username: user, Password: cfg.Password},
		Compression:      &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		TLS:              cfg.TLS,
		DialTimeout:      5 * time.Second,
		ReadTimeout:      60 * time.Second,
		MaxOpenConns:     8,
		MaxIdleConns:     4,
		ConnMaxLifetime:  time.Hour,
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.Addr, err)
	}
	return conn, nil
}

// quoteIdent quotes a configured identifier (never user input) for DDL.
func quoteIdent(s string) string {
	out := []byte{'`'}
	for i := 0; i < len(s); i++ {
		if s[i] == '`' || s[i] == '\\' {
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(append(out, '`'))
}
