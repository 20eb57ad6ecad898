// Package benchenv runs every erpstream service in the benchmark's own process on the real Kafka
// (KAFKA_BROKERS) and ClickHouse (CLICKHOUSE_ADDR), in topics and a database of its own, and posts
// to its API: the harness the whole-pipeline benchmarks share. The benchmarks are clients of the
// API under test (loopback), not outbound requests of erpstream, so they use net/http directly.
package benchenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/internal/chx"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// Env is a running pipeline.
type Env struct {
	Base string      // http://host:port of the API
	Conn driver.Conn // the benchmark's ClickHouse database
	// TopicPrefix names the benchmark's Kafka topics: consumer groups are shared by every
	// prefix on a broker, so their lag is read for these topics only.
	TopicPrefix string
	ch          chx.Config
	stop        context.CancelFunc
	done        chan error
}

// Start runs the pipeline; prefix names its topics and database, configure adjusts the
// configuration (nil: none). It exits the program when the services are not given.
func Start(prefix string, configure func(*app.Config)) *Env {
	brokers, chAddr := os.Getenv("KAFKA_BROKERS"), os.Getenv("CLICKHOUSE_ADDR")
	if brokers == "" || chAddr == "" {
		fmt.Fprintln(os.Stderr, "KAFKA_BROKERS and CLICKHOUSE_ADDR are required (scripts/test.sh up)")
		os.Exit(2)
	}
	suffix := strings.ToLower(ids.ULID(time.Now())[:10])
	e := &Env{ch: chx.Config{Addr: chAddr, Database: prefix + "_bench_" + suffix, User: "default"}, done: make(chan error, 1),
		TopicPrefix: prefix + "-" + suffix}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	ready := make(chan string, 1)
	cfg := app.Config{Services: app.AllServices, Listener: ln, DevMode: true, DevToken: "bench", RateLimitPerMinute: -1,
		Kafka:      kafkax.Config{Brokers: strings.Split(brokers, ","), TopicPrefix: e.TopicPrefix, Partitions: 12, Replication: 1},
		ClickHouse: e.ch, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), OnReady: func(a string) { ready <- a }}
	if configure != nil {
		configure(&cfg)
	}
	go func() { e.done <- app.Run(ctx, cfg) }()
	select {
	case a := <-ready:
		e.Base = "http://" + a
	case err := <-e.done:
		panic(err)
	}
	if e.Conn, err = chx.Open(ctx, e.ch); err != nil {
		panic(err)
	}
	return e
}

// Post sends a request with the bench token and answers the body; anything but 2xx panics.
func (e *Env) Post(path, contentType string, body []byte) []byte {
	return Post(e.Base, path, contentType, body)
}

// Post sends a request with the bench token to the API at base (a pipeline of the benchmark's
// own, started some other way) and answers the body; anything but 2xx panics.
func Post(base, path, contentType string, body []byte) []byte {
	return PostAs(base, "bench", path, contentType, body)
}

// PostAs is Post with another API token.
func PostAs(base, token, path, contentType string, body []byte) []byte {
	req, _ := http.NewRequest("POST", base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		panic(fmt.Sprintf("%s: %d %s", path, resp.StatusCode, out))
	}
	return out
}

// Stop stops the pipeline and drops the benchmark's database.
func (e *Env) Stop() {
	e.stop()
	err := <-e.done
	_ = e.Conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+e.ch.Database)
	DeleteTopics(strings.Split(os.Getenv("KAFKA_BROKERS"), ","), e.TopicPrefix)
	if err != nil {
		panic(err)
	}
}

// DeleteTopics deletes a benchmark's topics: left behind, every run's dozen topics of 12 partitions
// stay on the broker, which then spends ever more CPU on thousands of partitions and skews the
// runs after.
func DeleteTopics(brokers []string, prefix string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var names []string
	for _, spec := range kafkax.NewTopics(prefix).Specs(1) {
		names = append(names, spec.Name)
	}
	_, _ = kadm.NewClient(cl).DeleteTopics(ctx, names...)
}
