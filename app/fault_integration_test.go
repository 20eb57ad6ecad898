//go:build integration

package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
)

// broker drives the Apache Kafka broker that the project's own script started (scripts/kafka.sh),
// the way an operator restarts it.
type broker struct {
	t      *testing.T
	script string
	env    []string
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	state := os.Getenv("ERPSTREAM_STATE_DIR")
	if state == "" {
		state = filepath.Join(root, ".run", "test") // scripts/test.sh's state directory
	}
	if _, err := os.Stat(filepath.Join(state, "kafka", "kafka.pid")); err != nil {
		// Fault tests never skip: `make test` starts the broker through the script.
		t.Fatalf("the broker at %s was not started by scripts/kafka.sh with state in %s (run `make test`)", os.Getenv("KAFKA_BROKERS"), state)
	}
	return &broker{t: t, script: filepath.Join(root, "scripts", "kafka.sh"), env: append(os.Environ(), "ERPSTREAM_STATE_DIR="+state)}
}

func (b *broker) run(action string) {
	b.t.Helper()
	cmd := exec.Command("bash", b.script, action)
	cmd.Env = b.env
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Fatalf("kafka.sh %s: %v\n%s", action, err, out)
	}
}

// feeder sends customer events in requests of perRequest, resending a request until it is
// answered 200 (a 503 while the broker is away, or a dropped connection). Every event carries a
// deduplication id, so a resent event that had been stored is skipped, not mapped twice.
type feeder struct {
	e             *apptest.Env
	integrationID string
	perRequest    int
	pause         time.Duration // between requests, so the feed is still flowing when the broker stops
	client        *http.Client
	token         string             // "" is the dev token
	url           string             // the ingest's base URL; "" is e.URL
	event         func(i int) string // the i-th event; nil sends customer K-i with a deduplication id of its own
	sent          atomic.Int64       // events answered success
	retries       atomic.Int64
}

func (f *feeder) send(from, to int) error {
	for n := from; n < to; n += f.perRequest {
		var events []string
		for i := n; i < min(n+f.perRequest, to); i++ {
			if f.event != nil {
				events = append(events, f.event(i))
			} else {
				events = append(events, apptest.CustomerEvent(i, "Lena", fmt.Sprintf("fault-%d", i)))
			}
		}
		body := `{"integration_id":"` + f.integrationID + `","meta":{"correlation_id":"feed-` + fmt.Sprint(n) + `"},"events":[` + strings.Join(events, ",") + `]}`
		deadline := time.Now().Add(3 * time.Minute)
		for {
			ok, err := f.post(body, len(events))
			if ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("request at event %d not accepted within 3 minutes: %v", n, err)
			}
			f.retries.Add(1)
			time.Sleep(250 * time.Millisecond)
		}
		time.Sleep(f.pause)
	}
	return nil
}

func (f *feeder) post(body string, events int) (bool, error) {
	base := f.url
	if base == "" {
		base = f.e.URL
	}
	req, _ := http.NewRequest("POST", base+"/v3/erp/updates/events", strings.NewReader(body))
	token := f.token
	if token == "" {
		token = "it-token"
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct{ Status string } `json:"results"`
	}
	var raw bytes.Buffer
	_, _ = raw.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d: %s", resp.StatusCode, raw.String())
	}
	if err := json.Unmarshal(raw.Bytes(), &out); err != nil || len(out.Results) != events {
		return false, fmt.Errorf("answer %s: %v", raw.String(), err)
	}
	for _, r := range out.Results {
		if r.Status != "success" {
			return false, fmt.Errorf("result %s", raw.String())
		}
	}
	f.sent.Add(int64(events))
	return true, nil
}

// The single broker is stopped mid-feed for 15 s and started again, as an operator would. The
// pipeline (ingest, three processor instances, projector, registry, access log) must resume by
// itself, without a restart of erpstream, and count exactly: every event mapped once, one entity
// per customer.
func TestIntegrationBrokerRestartMidFeed(t *testing.T) {
	b := newBroker(t)
	e := apptest.New(t)
	e.Start()
	e.StartOnly(app.Process)
	e.StartOnly(app.Process)
	id := e.CreateIntegration(apptest.IntegrationBody)
	const total = 6000
	f := &feeder{e: e, integrationID: id, perRequest: 100, pause: 50 * time.Millisecond, client: &http.Client{Timeout: 30 * time.Second}}

	if err := f.send(0, total/3); err != nil {
		t.Fatal(err)
	}
	apptest.WaitFor(t, func() bool { return e.Processed("success") >= 1000 })

	feedDone := make(chan error, 1)
	go func() { feedDone <- f.send(total/3, total) }()
	time.Sleep(500 * time.Millisecond)
	t.Log("stopping the broker")
	b.run("stop")
	stoppedAt := time.Now()
	time.Sleep(15 * time.Second)
	before := e.Processed("success")
	t.Logf("starting the broker after %.1fs; %d events processed so far", time.Since(stoppedAt).Seconds(), before)
	b.run("start")
	backAt := time.Now()

	// Progress resumes within seconds of the broker being back.
	var resumed time.Duration
	for time.Since(backAt) < 90*time.Second {
		if e.Processed("success") > before {
			resumed = time.Since(backAt)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if resumed == 0 {
		dumpGoroutines(t)
		t.Fatalf("no event processed within 90 s of the broker being back (%d before, %d accepted)", before, f.sent.Load())
	}
	t.Logf("processing resumed %.1fs after the broker was back", resumed.Seconds())
	if err := <-feedDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("feed done: %d events accepted, %d requests resent", f.sent.Load(), f.retries.Load())

	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Minute)
	var live uint64
	for time.Now().Before(deadline) {
		if err := e.Conn.QueryRow(ctx, `SELECT count() FROM entities FINAL WHERE org_id = 'dev-org' AND entity_schema = 'contact' AND deleted = 0`).Scan(&live); err != nil {
			t.Fatal(err)
		}
		if live >= total && e.Processed("success") >= total {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("all %d events processed %.1fs after the broker was back", total, time.Since(backAt).Seconds())
	if live != total {
		t.Fatalf("%d live contacts, want %d", live, total)
	}
	// Exactly one success per customer; resent events are skipped as duplicates, never mapped twice.
	if got := e.Processed("success"); got != total {
		t.Errorf("%d success rows, want %d", got, total)
	}
	if got := e.Processed("error"); got != 0 {
		t.Errorf("%d error rows, want 0", got)
	}
	// Readiness says ok again once every consumer caught up (the lag monitor sees their commits).
	apptest.WaitFor(t, func() bool {
		resp, err := http.Get(e.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if dup := e.Scalar(`SELECT count() FROM (SELECT event_id FROM monitoring_events WHERE org_id = 'dev-org' GROUP BY event_id HAVING count() > 1)`); dup != 0 {
		t.Errorf("%d events have more than one monitoring row", dup)
	}
}

// dumpGoroutines writes every goroutine's stack next to the test log, for a stall's post-mortem.
func dumpGoroutines(t *testing.T) {
	path := filepath.Join(os.TempDir(), "erpstream-"+t.Name()+"-goroutines.txt")
	if f, err := os.Create(path); err == nil {
		_ = pprof.Lookup("goroutine").WriteTo(f, 2)
		_ = f.Close()
		t.Logf("goroutines written to %s", path)
	}
}
