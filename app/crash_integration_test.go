//go:build integration

package app_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app/apptest"
)

// newServeProcess is `erpstream serve` as a process of its own, its processor states on disk.
func newServeProcess(t *testing.T, e *apptest.Env) *childProcess {
	t.Helper()
	p := newChildProcess(t, e, buildErpstream(t), "ERPSTREAM_HTTP_ADDR", []string{"serve"}, "ERPSTREAM_RATE_LIMIT_PER_MIN=-1",
		// The same instance id after a restart fences the killed instance's open transaction at
		// once instead of after its timeout.
		"ERPSTREAM_INSTANCE_ID=crash-test", "ERPSTREAM_PROJECTOR_FLUSH_MS=200")
	// The processor's states on disk: a restart after SIGKILL reads the state topic from the
	// store's checkpoint, and the counts must still be exact.
	p.env = append(p.env, "ERPSTREAM_DATA_DIR="+p.dir, "ERPSTREAM_PROCESSOR_STATE_DIR="+filepath.Join(p.dir, "processor-state"))
	return p
}

// erpstream serve is killed with SIGKILL twice under load and started again; every request not
// answered 200 is resent. Counts are exact: one entity and one success row per event, nothing
// mapped twice (processor transactions, early commits and the projector's row check included).
func TestIntegrationSIGKILLUnderLoadLosesAndDoublesNothing(t *testing.T) {
	e := apptest.New(t)
	p := newServeProcess(t, e)
	p.start()
	e.URL = "http://" + p.addr
	id := e.CreateIntegration(apptest.IntegrationBody)
	const total = 4000
	f := &feeder{e: e, integrationID: id, perRequest: 100, pause: 50 * time.Millisecond, client: &http.Client{Timeout: 10 * time.Second}}
	feedDone := make(chan error, 1)
	go func() { feedDone <- f.send(0, total) }()
	for kill := 1; kill <= 2; kill++ {
		for f.sent.Load() < int64(kill*total/3) {
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("SIGKILL %d after %d events accepted", kill, f.sent.Load())
		p.kill()
		time.Sleep(time.Second)
		p.start()
	}
	if err := <-feedDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("feed done: %d events accepted, %d requests resent", f.sent.Load(), f.retries.Load())
	var live, success uint64
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		live = e.Scalar(`SELECT count() FROM entities FINAL WHERE org_id = 'dev-org' AND integration_id = ? AND deleted = 0`, id)
		success = e.Processed("success")
		if live >= total && success >= total {
			break
		}
	}
	if live != total || success != total {
		t.Fatalf("%d live contacts and %d success rows, want %d each", live, success, total)
	}
	// The killed instances' group members expire after the session timeout; wait for that, so
	// that the next test's groups hold only live members.
	time.Sleep(16 * time.Second)
	if dup := e.Scalar(`SELECT count() FROM (SELECT event_id FROM monitoring_events WHERE org_id = 'dev-org' AND level = 'success' GROUP BY event_id HAVING count() > 1)`); dup != 0 {
		t.Errorf("%d events have more than one success row", dup)
	}
}

// ClickHouse is stopped mid-feed for 10 s and started again (the project's own script): ingest
// keeps accepting (Kafka holds the events), the projector retries, and every event arrives once.
func TestIntegrationClickHouseOutageMidFeed(t *testing.T) {
	root, _ := filepath.Abs("..")
	state := filepath.Join(root, ".run") // scripts/test.sh keeps ClickHouse's state here
	if _, err := os.Stat(filepath.Join(state, "clickhouse", "clickhouse.pid")); err != nil {
		t.Fatalf("ClickHouse at %s was not started by scripts/clickhouse.sh with state in %s (run `make test`)", os.Getenv("CLICKHOUSE_ADDR"), state)
	}
	script := func(action string) {
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "clickhouse.sh"), action)
		// Without CLICKHOUSE_ADDR: with it set the script leaves the server alone.
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "CLICKHOUSE_ADDR=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "ERPSTREAM_STATE_DIR="+state)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("clickhouse.sh %s: %v\n%s", action, err, out)
		}
	}
	e := apptest.New(t)
	e.Start()
	id := e.CreateIntegration(apptest.IntegrationBody)
	const total = 3000
	f := &feeder{e: e, integrationID: id, perRequest: 100, pause: 30 * time.Millisecond, client: &http.Client{Timeout: 30 * time.Second}}
	feedDone := make(chan error, 1)
	go func() { feedDone <- f.send(0, total) }()
	apptest.WaitFor(t, func() bool { return e.Processed("success") > 0 && f.sent.Load() >= total/3 })
	t.Logf("stopping ClickHouse after %d events accepted", f.sent.Load())
	script("stop")
	// Readiness says so while ClickHouse is away (probed every 5 s), liveness does not.
	readyz := func() (int, string) {
		resp, err := http.Get(e.URL + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	notReady := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if status, body := readyz(); status == http.StatusServiceUnavailable && strings.Contains(body, "clickhouse unreachable") {
			notReady = true
		}
	}
	if !notReady {
		t.Error("/readyz never reported ClickHouse unreachable during the outage")
	}
	if resp, err := http.Get(e.URL + "/livez"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/livez during the outage: %v %v", resp, err)
	}
	script("start")
	apptest.WaitFor(t, func() bool { status, _ := readyz(); return status == http.StatusOK })
	t.Logf("ClickHouse back; %d events accepted", f.sent.Load())
	if err := <-feedDone; err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var live uint64
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		// The test's own connections may have died with the server: errors here are retried.
		if err := e.Conn.QueryRow(ctx, `SELECT count() FROM entities FINAL WHERE integration_id = ? AND deleted = 0`, id).Scan(&live); err == nil && live >= total {
			break
		}
	}
	if live != total {
		t.Fatalf("%d live contacts, want %d", live, total)
	}
	apptest.WaitFor(t, func() bool { return e.Processed("success") >= total })
	if got := e.Processed("success"); got != total {
		t.Errorf("%d success rows, want %d", got, total)
	}
	if stored := e.Scalar(`SELECT count() FROM raw_events FINAL WHERE integration_id = ?`, id); stored != total {
		t.Errorf("%d raw events, want %d", stored, total)
	}
}
