//go:build integration

package app_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// Partitions are added to the three co-partitioned topics while ingest and two `erpstream
// process` processes run, as an operator wanting more processor instances would. The running
// services go on placing orgs among the four partitions they started with; an ingest started
// after the change places among six, and the processors forward its events to where the orgs'
// states are, also from the added partitions the group gives them while they run. Then the change is finished by the documented steps (processors stopped, `erpstream
// admin relayout`, started again) while the first ingest still places among four. Every event is
// mapped once: per org one live contact per customer with the last round's name, one success row
// per event, no errors.
func TestIntegrationPartitionsAddedWhileRunningLoseAndDoubleNothing(t *testing.T) {
	g := newGrowingPipeline(t, 8, "grow")
	e, bin, procs, secret := g.e, g.bin, g.procs, g.secret
	moved, added := 0, 0
	for _, o := range g.orgs {
		was, now := kafkax.OrgPartition([]byte(o.id), 4), kafkax.OrgPartition([]byte(o.id), 6)
		if now >= 4 {
			added++
		} else if now != was {
			moved++
		}
	}
	if moved == 0 || added == 0 {
		t.Fatalf("among six partitions %d orgs move within the first four and %d to added ones; the test needs both", moved, added)
	}
	topics := e.Kafka.Topics()
	g.grow(6, topics.Events, topics.EntityState, topics.Dedup)

	// An ingest started now verifies six partitions and places by them. The processors, still
	// placing among four, forward the events of every org it moved: first those within the first
	// four partitions; those in the added ones once the processors' metadata shows them (their
	// first forward loads it; at the latest franz-go's refresh after five minutes) and the group
	// gives them out, which the processor holding them logs.
	later := newChildProcess(t, e, bin, "ERPSTREAM_HTTP_ADDR", []string{"ingest"}, "ERPSTREAM_JWT_HS256_SECRET="+string(secret))
	later.start()
	g.round(1, "http://"+later.addr)
	g.waitSuccesses(2*growCustomers, func(o *scaleOrg) bool { return kafkax.OrgPartition([]byte(o.id), 6) < 4 })
	g.waitSuccessesWithin(6*time.Minute, 2*growCustomers, g.every)
	forwarded := 0.0
	for _, p := range procs {
		forwarded += p.metric("erpstream_processor_forwarded_events_total")
	}
	if forwarded != float64((moved+added)*growCustomers) {
		t.Fatalf("%v events forwarded, want %d (those of the %d orgs placed elsewhere)", forwarded, (moved+added)*growCustomers, moved+added)
	}
	said := false
	for _, p := range procs {
		logged, err := os.ReadFile(p.log.Name())
		apptest.Must(t, err)
		said = said || strings.Contains(string(logged), "events partitions were added since this processor started")
	}
	if !said {
		t.Error("no processor logged that it was given an added partition")
	}

	// Finishing the change: processors stopped, states and marks laid out for six, started.
	for _, p := range procs {
		p.stop()
	}
	relayout := exec.Command(bin, "admin", "relayout")
	relayout.Env = later.env
	out, err := relayout.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "moved ") {
		t.Fatalf("admin relayout: %v\n%s", err, out)
	}
	t.Logf("admin relayout: %s", strings.TrimSpace(string(out)[strings.LastIndex(string(out), "moved "):]))
	for _, p := range procs {
		p.start()
	}
	g.waitSuccesses(2*growCustomers, g.every)
	// The first ingest still places among four: the processors, now placing among six, forward.
	g.round(2, "")
	g.waitSuccesses(3*growCustomers, g.every)
	g.checkExact(3, "R2")
}

const growCustomers = 40

// growingPipeline is ingest, query and projector in the test, two `erpstream process` processes
// (prefix-1, prefix-2) and orgs sending rounds of the same customers (a new first name each round)
// on topics of four partitions.
type growingPipeline struct {
	t      *testing.T
	e      *apptest.Env
	secret []byte
	bin    string
	procs  []*childProcess
	orgs   []*scaleOrg
}

// newGrowingPipeline starts the pipeline and maps a first round.
func newGrowingPipeline(t *testing.T, orgs int, prefix string) *growingPipeline {
	g := &growingPipeline{t: t, e: apptest.New(t), secret: []byte("grow-test-secret-0123456789abcdef"), bin: buildErpstream(t)}
	g.e.JWT = auth.JWTConfig{HS256Secret: g.secret}
	g.e.Configure = func(cfg *app.Config) { cfg.Services = []string{app.Ingest, app.Query, app.Project} }
	g.e.Start()
	for i := range orgs {
		g.orgs = append(g.orgs, newScaleOrg(t, g.e, g.secret, fmt.Sprint("grow-org-", i)))
	}
	g.procs = []*childProcess{newProcessorProcess(t, g.e, g.bin, prefix+"-1"), newProcessorProcess(t, g.e, g.bin, prefix+"-2")}
	for _, p := range g.procs {
		p.start()
	}
	g.round(0, "")
	g.waitSuccesses(growCustomers, g.every)
	return g
}

// grow gives topics n partitions, as kafka-topics.sh --alter would, while everything runs.
func (g *growingPipeline) grow(n int, topics ...string) {
	g.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(g.e.Kafka.Brokers...))
	apptest.Must(g.t, err)
	defer cl.Close()
	resp, err := kadm.NewClient(cl).UpdatePartitions(g.t.Context(), n, topics...)
	apptest.Must(g.t, err)
	apptest.Must(g.t, resp.Error())
}

func (g *growingPipeline) every(*scaleOrg) bool { return true }

// round sends every org's customers once, through the ingest at url ("": the test's own).
func (g *growingPipeline) round(r int, url string) {
	g.t.Helper()
	done := make(chan error, len(g.orgs))
	for _, o := range g.orgs {
		f := &feeder{e: g.e, integrationID: o.integration, perRequest: 20, token: o.token, url: url, client: o.feed.client,
			event: func(i int) string {
				return apptest.CustomerEvent(i, fmt.Sprint("R", r), fmt.Sprintf("%s-%d-%d", o.id, r, i))
			}}
		go func() { done <- f.send(0, growCustomers) }()
	}
	for range g.orgs {
		if err := <-done; err != nil {
			g.t.Fatal(err)
		}
	}
}

func (g *growingPipeline) successes(o *scaleOrg) uint64 {
	return g.e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE org_id = ? AND level = 'success'`, o.id)
}

// waitSuccesses waits (2 minutes at most) until every org which selects has want events mapped.
func (g *growingPipeline) waitSuccesses(want uint64, which func(*scaleOrg) bool) {
	g.t.Helper()
	g.waitSuccessesWithin(2*time.Minute, want, which)
}

func (g *growingPipeline) waitSuccessesWithin(wait time.Duration, want uint64, which func(*scaleOrg) bool) {
	g.t.Helper()
	deadline := time.Now().Add(wait)
	for _, o := range g.orgs {
		if !which(o) {
			continue
		}
		got := g.successes(o)
		for ; got < want && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			got = g.successes(o)
		}
		if got != want {
			g.t.Fatalf("%s: %d events mapped, want %d", o.id, got, want)
		}
	}
}

// checkExact checks that each of rounds was mapped once: one live contact per customer with the
// last round's name, one success row per event, no error, stats that count each event once, and
// no status warning.
func (g *growingPipeline) checkExact(rounds int, last string) {
	g.t.Helper()
	e, events := g.e, uint64(rounds*growCustomers)
	for _, o := range g.orgs {
		live := e.Scalar(`SELECT count() FROM entities FINAL WHERE org_id = ? AND deleted = 0`, o.id)
		current := e.Scalar(`SELECT count() FROM entities FINAL WHERE org_id = ? AND deleted = 0
			AND visitParamExtractString(attributes, 'first_name') = ?`, o.id, last)
		failed := e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE org_id = ? AND level = 'error'`, o.id)
		doubled := e.Scalar(`SELECT count() FROM (SELECT event_id FROM monitoring_events WHERE org_id = ? AND level = 'success'
			GROUP BY event_id HAVING count() > 1)`, o.id)
		if live != growCustomers || current != growCustomers || failed != 0 || doubled != 0 {
			g.t.Errorf("%s: %d live contacts, %d with the last round's name, %d error rows, %d events with two success rows; want %d, %d, 0, 0",
				o.id, live, current, failed, doubled, growCustomers, growCustomers)
		}
		status, st := e.CallAs(o.token, "POST", "/v1/monitoring/stats", `{"integration_id":"`+o.integration+`","from":"`+
			time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+`","to":"`+time.Now().Add(time.Minute).UTC().Format(time.RFC3339)+`"}`)
		if status != http.StatusOK || st["success_count"] != float64(events) || st["total_events"] != float64(events) {
			g.t.Errorf("%s: stats %d %v, want %d events, each a success", o.id, status, st, events)
		}
	}
	var out strings.Builder
	apptest.Must(g.t, app.Status(context.Background(), app.Config{Kafka: e.Kafka, ClickHouse: e.CH}, e.Log, &out))
	if strings.Contains(out.String(), "WARNING") {
		g.t.Errorf("status warns after the change was finished:\n%s", out.String())
	}
}

// Partitions are added to erp.events alone while the pipeline runs (a change begun by hand and
// left half done): status warns, a service starting now is refused, the running ones go on.
// `erpstream admin partitions 6` refuses while the processors run, then, with them stopped,
// grows the other two topics and lays the states out. Every event is mapped once.
func TestIntegrationAdminPartitionsFinishesAHalfDoneChange(t *testing.T) {
	g := newGrowingPipeline(t, 6, "half")
	e, bin, procs, secret := g.e, g.bin, g.procs, g.secret
	topics := e.Kafka.Topics()
	g.grow(6, topics.Events)
	var status strings.Builder
	apptest.Must(t, app.Status(context.Background(), app.Config{Kafka: e.Kafka, ClickHouse: e.CH}, e.Log, &status))
	if !strings.Contains(status.String(), "WARNING "+topics.EntityState+" has 4 partitions, "+topics.Events+" 6") {
		t.Errorf("status does not warn of the half-done change:\n%s", status.String())
	}
	later := newChildProcess(t, e, bin, "ERPSTREAM_HTTP_ADDR", []string{"ingest"}, "ERPSTREAM_JWT_HS256_SECRET="+string(secret))
	refused := exec.Command(bin, "ingest")
	refused.Env = later.env
	if out, err := refused.CombinedOutput(); err == nil || !strings.Contains(string(out), "they must stay equal") {
		t.Fatalf("an ingest starting with the topics unequal: %v\n%s", err, out)
	}
	g.round(1, "") // the running ingest places among the four it started with
	g.waitSuccesses(2*growCustomers, g.every)

	admin := func() (string, error) {
		cmd := exec.Command(bin, "admin", "partitions", "6")
		cmd.Env = later.env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := admin(); err == nil || !strings.Contains(out, "stop every processor first") {
		t.Fatalf("admin partitions with the processors running: %v\n%s", err, out)
	}
	for _, p := range procs {
		p.stop()
	}
	out, err := admin()
	if err != nil || !strings.Contains(out, "4 -> 6 partitions; moved ") {
		t.Fatalf("admin partitions: %v\n%s", err, out)
	}
	t.Logf("admin partitions: %s", out[strings.Index(out, "4 -> 6"):])
	for _, p := range procs {
		p.start()
	}
	g.round(2, "") // still among four: forwarded
	later.start()  // verifies six, places among them
	g.round(3, "http://"+later.addr)
	g.waitSuccesses(4*growCustomers, g.every)
	g.checkExact(4, "R3")
}
