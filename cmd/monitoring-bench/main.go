// Command monitoring-bench measures the monitoring queries on ClickHouse (CLICKHOUSE_ADDR): it
// seeds monitoring events (10 million over 30 days for 20 integrations by default, through the
// projector's sink so the per-minute and per-hour aggregates fill as in production), then prints
// p50/p95/max latencies of stats, time series and error search with keyset pages, each as the
// query service runs it. A seeded database is reused when it already holds the rows.
//
//	CLICKHOUSE_ADDR=127.0.0.1:19000 go run ./cmd/monitoring-bench [-rows 10000000] [-queries 40]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/erpstream/erpstream/internal/chx"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/projector"
	"github.com/erpstream/erpstream/projector/schema"
	"github.com/erpstream/erpstream/query"
)

const org = "bench-org"

func main() {
	rows := flag.Int("rows", 10_000_000, "monitoring events to seed")
	days := flag.Int("days", 30, "days the events spread over, ending now")
	integrations := flag.Int("integrations", 20, "integrations the events belong to")
	queries := flag.Int("queries", 40, "queries per kind")
	database := flag.String("database", "erpstream_bench", "ClickHouse database (reused when seeded)")
	flag.Parse()
	addr := os.Getenv("CLICKHOUSE_ADDR")
	if addr == "" {
		fmt.Fprintln(os.Stderr, "CLICKHOUSE_ADDR is required (scripts/clickhouse.sh start)")
		os.Exit(2)
	}
	ctx := context.Background()
	conn, err := chx.Open(ctx, chx.Config{Addr: addr, Database: *database})
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	if err := schema.Migrate(ctx, conn, slog.New(slog.DiscardHandler)); err != nil {
		fail(err)
	}
	now := time.Now().UTC().Truncate(time.Hour)
	var have uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM monitoring_events").Scan(&have); err != nil {
		fail(err)
	}
	if have < uint64(*rows) {
		if have > 0 {
			for _, t := range []string{"monitoring_events", "monitoring_minute", "monitoring_hour"} {
				if err := conn.Exec(ctx, "TRUNCATE TABLE "+t); err != nil {
					fail(err)
				}
			}
		}
		seed(ctx, conn, *rows, *days, *integrations, now)
	} else {
		fmt.Printf("reusing %d seeded monitoring events in %s (drop the database to reseed)\n", have, *database)
		var newest uint64
		_ = conn.QueryRow(ctx, "SELECT max(created_at_ms) FROM monitoring_events").Scan(&newest)
		now = time.UnixMilli(int64(newest)).UTC().Truncate(time.Hour).Add(time.Hour)
	}

	store := &query.ClickHouseStore{Conn: conn}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() query.Filter {
		return query.Filter{OrgID: org, IntegrationID: integrationID(rng.IntN(*integrations))}
	}
	// A random end inside the seeded range, off any minute boundary, as a user's "now" would be.
	end := func(back time.Duration) time.Time {
		span := time.Duration(*days)*24*time.Hour - back
		return now.Add(-time.Duration(rng.Int64N(int64(span)))).Add(-time.Duration(rng.IntN(59_000)) * time.Millisecond)
	}
	fmt.Printf("== monitoring queries on ClickHouse %s (%d per kind; one integration holds ~%d events)\n",
		serverVersion(conn), *queries, *rows / *integrations)
	run("stats, last 24 hours", *queries, func() error {
		f := pick()
		f.To = end(24 * time.Hour)
		f.From = f.To.Add(-24 * time.Hour)
		_, err := store.StatsBy(ctx, f, "")
		return err
	})
	run("stats, 7 days by use case", *queries, func() error {
		f := pick()
		f.To = end(7 * 24 * time.Hour)
		f.From = f.To.Add(-7 * 24 * time.Hour)
		_, err := store.StatsBy(ctx, f, "use_case_id")
		return err
	})
	run("stats, 30 days by level", *queries, func() error {
		f := pick()
		f.To = now
		f.From = now.Add(-time.Duration(*days) * 24 * time.Hour).Add(time.Duration(rng.IntN(3600)) * time.Second)
		_, err := store.StatsBy(ctx, f, "level")
		return err
	})
	run("time series, 3 hours in 1m buckets", *queries, func() error {
		f := pick()
		f.To = end(3 * time.Hour)
		f.From = f.To.Add(-3 * time.Hour)
		_, err := store.TimeSeries(ctx, f, time.Minute)
		return err
	})
	run("time series, 12 hours in 5m buckets", *queries, func() error {
		f := pick()
		f.To = end(12 * time.Hour)
		f.From = f.To.Add(-12 * time.Hour)
		_, err := store.TimeSeries(ctx, f, 5*time.Minute)
		return err
	})
	run("time series, 7 days in 1h buckets", *queries, func() error {
		f := pick()
		f.To = end(7 * 24 * time.Hour)
		f.From = f.To.Add(-7 * 24 * time.Hour)
		_, err := store.TimeSeries(ctx, f, time.Hour)
		return err
	})
	var pageCursor *query.Cursor
	var pageFilter query.Filter
	run("error search, 7 days, first page of 50", *queries, func() error {
		f := pick()
		f.To = end(7 * 24 * time.Hour)
		f.From = f.To.Add(-7 * 24 * time.Hour)
		f.Levels = []string{"error"}
		page, err := store.Events(ctx, f, 51, nil)
		if len(page) == 51 {
			pageFilter, pageCursor = f, &query.Cursor{CreatedAtMs: page[49].CreatedAtMs, ID: page[49].ID}
		}
		return err
	})
	run("error search, next page by cursor", *queries, func() error {
		page, err := store.Events(ctx, pageFilter, 51, pageCursor)
		if len(page) == 51 {
			pageCursor = &query.Cursor{CreatedAtMs: page[49].CreatedAtMs, ID: page[49].ID}
		}
		return err
	})
	run("error search by code, 30 days", *queries, func() error {
		f := pick()
		f.To = now
		f.From = now.Add(-time.Duration(*days) * 24 * time.Hour)
		f.Code = "MAPPING_EXPRESSION_FAILED"
		_, err := store.Events(ctx, f, 51, nil)
		return err
	})
	consolePages(ctx, conn, *integrations, *queries, now)
}

func integrationID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

var codes = []struct {
	level envelope.Level
	code  string
	share int // per mille
}{
	{envelope.LevelSuccess, "ENTITY_UPDATED", 700},
	{envelope.LevelSuccess, "ENTITY_CREATED", 200},
	{envelope.LevelError, "MAPPING_EXPRESSION_FAILED", 20},
	{envelope.LevelError, "MALFORMED_PAYLOAD", 10},
	{envelope.LevelError, "MISSING_UNIQUE_IDENTIFIERS", 20},
	{envelope.LevelWarning, "ATTRIBUTE_TYPE_MISMATCH", 30},
	{envelope.LevelSkipped, "DUPLICATE_EVENT", 20},
}

// seed inserts rows events spread uniformly over days, in time order as the projector would.
func seed(ctx context.Context, conn driver.Conn, rows, days, integrations int, now time.Time) {
	sink := &projector.ClickHouseSink{Conn: conn}
	rng := rand.New(rand.NewPCG(3, 4))
	start := now.Add(-time.Duration(days) * 24 * time.Hour).UnixMilli()
	stepMs := float64(now.UnixMilli()-start) / float64(rows)
	const batchSize = 200_000
	began := time.Now()
	batch := make([]envelope.MonitoringEvent, 0, batchSize)
	for i := 0; i < rows; i++ {
		c, r, acc := codes[0], rng.IntN(1000), 0
		for _, k := range codes {
			if acc += k.share; r < acc {
				c = k
				break
			}
		}
		integ := rng.IntN(integrations)
		batch = append(batch, envelope.MonitoringEvent{
			ID: fmt.Sprintf("mon_%010d", i), OrgID: org, IntegrationID: integrationID(integ), EventID: fmt.Sprintf("evt_%010d", i),
			CorrelationID: fmt.Sprintf("batch-%d", i/100), UseCaseID: fmt.Sprintf("uc-%d-%d", integ, rng.IntN(3)), UseCaseType: "inbound",
			Level: c.level, Code: c.code, Message: "contact K-" + fmt.Sprint(rng.IntN(1_000_000)) + ": " + c.code,
			CreatedAtMs: start + int64(float64(i)*stepMs),
		})
		if len(batch) == batchSize || i == rows-1 {
			if err := sink.WriteMonitoring(ctx, batch); err != nil {
				fail(err)
			}
			batch = batch[:0]
			if (i+1)%2_000_000 < batchSize || i == rows-1 {
				el := time.Since(began)
				fmt.Printf("  seeded %d/%d monitoring events (%.0f rows/s)\n", i+1, rows, float64(i+1)/el.Seconds())
			}
		}
	}
	// Let background merges settle so the numbers are about queries, not the seeding.
	_ = conn.Exec(ctx, "OPTIMIZE TABLE monitoring_minute FINAL")
	_ = conn.Exec(ctx, "OPTIMIZE TABLE monitoring_hour FINAL")
}

func run(name string, n int, q func() error) {
	var lat []time.Duration
	for i := 0; i < n; i++ {
		t := time.Now()
		if err := q(); err != nil {
			fail(fmt.Errorf("%s: %w", name, err))
		}
		lat = append(lat, time.Since(t))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("  %-40s p50 %7.1f ms   p95 %7.1f ms   max %7.1f ms\n", name, ms(lat[len(lat)/2]), ms(lat[len(lat)*95/100]), ms(lat[len(lat)-1]))
}

func serverVersion(conn driver.Conn) string {
	v, err := conn.ServerVersion()
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%d.%d.%d", v.Version.Major, v.Version.Minor, v.Version.Patch)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "monitoring-bench:", err)
	os.Exit(1)
}
