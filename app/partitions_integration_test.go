//go:build integration

package app_test

import (
	"context"
	"fmt"
	"net/http"
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
// states are. Then the change is finished by the documented steps (processors stopped, `erpstream
// admin relayout`, started again) while the first ingest still places among four. Every event is
// mapped once: per org one live contact per customer with the last round's name, one success row
// per event, no errors.
func TestIntegrationPartitionsAddedWhileRunningLoseAndDoubleNothing(t *testing.T) {
	e := apptest.New(t)
	secret := []byte("grow-test-secret-0123456789abcdef")
	e.JWT = auth.JWTConfig{HS256Secret: secret}
	e.Configure = func(cfg *app.Config) { cfg.Services = []string{app.Ingest, app.Query, app.Project} }
	e.Start()

	const customers = 40
	var orgs []*scaleOrg
	moved, added := 0, 0
	for i := range 8 {
		o := newScaleOrg(t, e, secret, fmt.Sprint("grow-org-", i))
		orgs = append(orgs, o)
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
	round := func(r int, url string) {
		t.Helper()
		done := make(chan error, len(orgs))
		for _, o := range orgs {
			f := &feeder{e: e, integrationID: o.integration, perRequest: 20, token: o.token, url: url, client: o.feed.client,
				event: func(i int) string {
					return apptest.CustomerEvent(i, fmt.Sprint("R", r), fmt.Sprintf("%s-%d-%d", o.id, r, i))
				}}
			go func() { done <- f.send(0, customers) }()
		}
		for range orgs {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	successes := func(o *scaleOrg) uint64 {
		return e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE org_id = ? AND level = 'success'`, o.id)
	}
	waitSuccesses := func(want uint64, which func(*scaleOrg) bool) {
		t.Helper()
		for _, o := range orgs {
			if !which(o) {
				continue
			}
			got := successes(o)
			for deadline := time.Now().Add(2 * time.Minute); got < want && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
				got = successes(o)
			}
			if got != want {
				t.Fatalf("%s: %d events mapped, want %d", o.id, got, want)
			}
		}
	}
	every := func(*scaleOrg) bool { return true }

	bin := buildErpstream(t)
	procs := []*childProcess{newProcessorProcess(t, e, bin, "grow-1"), newProcessorProcess(t, e, bin, "grow-2")}
	for _, p := range procs {
		p.start()
	}
	round(0, "")
	waitSuccesses(customers, every)

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Kafka.Brokers...))
	apptest.Must(t, err)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := e.Kafka.Topics()
	resp, err := adm.CreatePartitions(t.Context(), 2, topics.Events, topics.EntityState, topics.Dedup)
	apptest.Must(t, err)
	apptest.Must(t, resp.Error())

	// An ingest started now verifies six partitions and places by them. The processors forward
	// the events of the orgs it moved within the first four partitions (those in the added ones
	// wait until the processors' metadata shows them, or their restart below).
	later := newChildProcess(t, e, bin, "ERPSTREAM_HTTP_ADDR", []string{"ingest"}, "ERPSTREAM_JWT_HS256_SECRET="+string(secret))
	later.start()
	round(1, "http://"+later.addr)
	waitSuccesses(2*customers, func(o *scaleOrg) bool { return kafkax.OrgPartition([]byte(o.id), 6) < 4 })
	forwarded := 0.0
	for _, p := range procs {
		forwarded += p.metric("erpstream_processor_forwarded_events_total")
	}
	if forwarded < float64(moved*customers) {
		t.Fatalf("%v events forwarded, want at least %d (the orgs moved within the first four partitions)", forwarded, moved*customers)
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
	waitSuccesses(2*customers, every)
	// The first ingest still places among four: the processors, now placing among six, forward.
	round(2, "")
	waitSuccesses(3*customers, every)

	for _, o := range orgs {
		live := e.Scalar(`SELECT count() FROM entities FINAL WHERE org_id = ? AND deleted = 0`, o.id)
		current := e.Scalar(`SELECT count() FROM entities FINAL WHERE org_id = ? AND deleted = 0
			AND visitParamExtractString(attributes, 'first_name') = 'R2'`, o.id)
		failed := e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE org_id = ? AND level = 'error'`, o.id)
		doubled := e.Scalar(`SELECT count() FROM (SELECT event_id FROM monitoring_events WHERE org_id = ? AND level = 'success'
			GROUP BY event_id HAVING count() > 1)`, o.id)
		if live != customers || current != customers || failed != 0 || doubled != 0 {
			t.Errorf("%s: %d live contacts, %d with the last round's name, %d error rows, %d events with two success rows; want %d, %d, 0, 0",
				o.id, live, current, failed, doubled, customers, customers)
		}
		status, st := e.CallAs(o.token, "POST", "/v1/monitoring/stats", `{"integration_id":"`+o.integration+`","from":"`+
			time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+`","to":"`+time.Now().Add(time.Minute).UTC().Format(time.RFC3339)+`"}`)
		if status != http.StatusOK || st["success_count"] != float64(3*customers) || st["total_events"] != float64(3*customers) {
			t.Errorf("%s: stats %d %v, want %d events, each a success", o.id, status, st, 3*customers)
		}
	}
	var status strings.Builder
	apptest.Must(t, app.Status(context.Background(), app.Config{Kafka: e.Kafka, ClickHouse: e.CH}, e.Log, &status))
	if strings.Contains(status.String(), "WARNING") {
		t.Errorf("status warns after the change was finished:\n%s", status.String())
	}
}
