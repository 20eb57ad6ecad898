//go:build integration

package app_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// newProcessorProcess is `erpstream process` as a process of its own, with its state on disk and
// its metrics on a port of its own.
func newProcessorProcess(t *testing.T, e *apptest.Env, bin, id string) *childProcess {
	t.Helper()
	p := newChildProcess(t, e, bin, "ERPSTREAM_METRICS_ADDR", []string{"process"}, "ERPSTREAM_INSTANCE_ID="+id)
	p.env = append(p.env, "ERPSTREAM_PROCESSOR_STATE_DIR="+filepath.Join(p.dir, "state"))
	return p
}

// metric is the sum of a metric's samples on the process's metrics port (-1 when it is down).
func (p *childProcess) metric(name string) float64 {
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	total := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			fields := strings.Fields(line)
			v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
			total += v
		}
	}
	return total
}

// scaleOrg is an org with a token of its own, its integration (apptest.IntegrationBody) and a
// feeder of its events.
type scaleOrg struct {
	id, token, integration string
	feed                   *feeder
}

func newScaleOrg(t *testing.T, e *apptest.Env, secret []byte, id string) *scaleOrg {
	t.Helper()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"org_id": id, "permissions": auth.AllPermissions,
		"exp": time.Now().Add(time.Hour).Unix(), "jti": id}).SignedString(secret)
	apptest.Must(t, err)
	status, integ := e.CallAs(token, "POST", "/v2/integrations", apptest.IntegrationBody)
	if status != http.StatusCreated {
		t.Fatalf("create integration: %d %v", status, integ)
	}
	o := &scaleOrg{id: id, token: token, integration: integ["id"].(string)}
	o.feed = &feeder{e: e, integrationID: o.integration, perRequest: 50, pause: time.Second, token: token,
		client: &http.Client{Timeout: 30 * time.Second}}
	return o
}

// startThreeProcessors starts three `erpstream process` children named prefix-1…3, the one at
// standby following the partitions it does not hold (none: -1).
func startThreeProcessors(t *testing.T, e *apptest.Env, prefix string, standby int) []*childProcess {
	t.Helper()
	bin := buildErpstream(t)
	procs := []*childProcess{newProcessorProcess(t, e, bin, prefix+"-1"), newProcessorProcess(t, e, bin, prefix+"-2"),
		newProcessorProcess(t, e, bin, prefix+"-3")}
	if standby >= 0 {
		procs[standby].env = append(procs[standby].env, "ERPSTREAM_PROCESSOR_STANDBY=true")
	}
	for _, p := range procs {
		p.start()
	}
	return procs
}

// resendFirstEvents sends every org's first n events again at once (their deduplication ids)
// and waits for each feed to be answered.
func resendFirstEvents(t *testing.T, orgs []*scaleOrg, n int) {
	t.Helper()
	done := make(chan error, len(orgs))
	for _, o := range orgs {
		o.feed.pause = 0
		go func() { done <- o.feed.send(0, n) }()
	}
	for range orgs {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// Three `erpstream process` processes share the events of four orgs, one org per partition: each
// maps a share. One is killed with SIGKILL mid-feed; its partitions move to the other two with
// their entity state, and back when it is started again. Every event is mapped once: per org one
// live entity and one success row per event, and the stats count each once.
func TestIntegrationThreeProcessorsOneKilledLoseAndDoubleNothing(t *testing.T) {
	e := apptest.New(t)
	secret := []byte("scale-out-test-secret-0123456789abcdef")
	e.JWT = auth.JWTConfig{HS256Secret: secret}
	e.Configure = func(cfg *app.Config) { cfg.Services = []string{app.Ingest, app.Query, app.Project} }
	e.Start()
	var orgs []*scaleOrg
	covered := map[int32]bool{}
	for i := 0; len(orgs) < 4; i++ {
		id := fmt.Sprint("scale-org-", i)
		if part := kafkax.OrgPartition([]byte(id), 4); covered[part] {
			continue
		} else {
			covered[part] = true
		}
		orgs = append(orgs, newScaleOrg(t, e, secret, id))
	}
	// One of the three is a standby (follows the partitions it does not hold): a takeover by it
	// reads the last seconds, one by the others the partition's state since they last held it.
	procs := startThreeProcessors(t, e, "scale", 1)
	assigned := func(ps ...*childProcess) (sum float64, each []float64) {
		for _, p := range ps {
			n := p.metric("erpstream_processor_assigned_partitions")
			each = append(each, n)
			sum += n
		}
		return sum, each
	}
	apptest.WaitFor(t, func() bool {
		sum, each := assigned(procs...)
		return sum == 4 && each[0] > 0 && each[1] > 0 && each[2] > 0
	})
	const perOrg = 1500
	feedDone := make(chan error, len(orgs))
	for _, o := range orgs {
		go func() { feedDone <- o.feed.send(0, perOrg) }()
	}
	sent := func() (n int64) {
		for _, o := range orgs {
			n += o.feed.sent.Load()
		}
		return n
	}
	for sent() < perOrg {
		time.Sleep(20 * time.Millisecond)
	}
	// Every instance maps: each has mapped events before the kill.
	apptest.WaitFor(t, func() bool {
		for _, p := range procs {
			if p.metric("erpstream_processor_events_total") <= 0 {
				return false
			}
		}
		return true
	})
	_, each := assigned(procs...)
	victim := 0 // the instance with the most partitions
	for i := range each {
		if each[i] > each[victim] {
			victim = i
		}
	}
	t.Logf("partitions per instance %v; SIGKILL instance %d after %d events accepted", each, victim+1, sent())
	others := append(append([]*childProcess{}, procs[:victim]...), procs[victim+1:]...)
	procs[victim].kill()
	// Its partitions move to the two others after the session timeout.
	apptest.WaitFor(t, func() bool { sum, _ := assigned(others...); return sum == 4 })
	t.Logf("partitions moved to the others; %d events accepted", sent())
	procs[victim].start()
	apptest.WaitFor(t, func() bool {
		sum, _ := assigned(procs...)
		return sum == 4 && procs[victim].metric("erpstream_processor_assigned_partitions") > 0
	})
	t.Logf("the restarted instance has partitions again; %d events accepted", sent())
	for range orgs {
		if err := <-feedDone; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("feed done: %d events accepted", sent())
	// Copies of each org's first events (their deduplication ids), sent after the partitions
	// moved away and back: refused by the marks the instances caught up or followed.
	const copies = 300
	resendFirstEvents(t, orgs, copies)
	for i, p := range procs {
		t.Logf("instance %d (standby %v): %v state and %v mark records read catching up given partitions, %v and %v by standby rounds", i, i == 1,
			p.metric("erpstream_entity_state_restored_records"), p.metric("erpstream_dedup_restored_records"),
			p.metric("erpstream_entity_state_standby_records"), p.metric("erpstream_dedup_standby_records"))
	}
	assertEachEventOnce(t, e, orgs, perOrg, copies)
}

// assertEachEventOnce waits for and checks every org's outcome: perOrg live contacts and success
// rows, at least copies refused as duplicates, no event with two success rows, and stats that
// count each event once.
func assertEachEventOnce(t *testing.T, e *apptest.Env, orgs []*scaleOrg, perOrg, copies int) {
	t.Helper()
	for _, o := range orgs {
		var live, success, refused uint64
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
			live = e.Scalar(`SELECT count() FROM entities FINAL WHERE org_id = ? AND deleted = 0`, o.id)
			success = e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE org_id = ? AND level = 'success'`, o.id)
			refused = e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE org_id = ? AND code = 'DUPLICATE_EVENT'`, o.id)
			if live >= uint64(perOrg) && success >= uint64(perOrg) && refused >= uint64(copies) {
				break
			}
		}
		if live != uint64(perOrg) || success != uint64(perOrg) {
			t.Errorf("%s: %d live contacts and %d success rows, want %d each", o.id, live, success, perOrg)
		}
		// At least the copies (a request the feed resent after a timeout adds its own).
		if refused < uint64(copies) {
			t.Errorf("%s: %d copies refused as duplicates, want at least %d", o.id, refused, copies)
		}
		if dup := e.Scalar(`SELECT count() FROM (SELECT event_id FROM monitoring_events WHERE org_id = ? AND level = 'success' GROUP BY event_id HAVING count() > 1)`, o.id); dup != 0 {
			t.Errorf("%s: %d events have more than one success row", o.id, dup)
		}
		status, st := e.CallAs(o.token, "POST", "/v1/monitoring/stats", `{"integration_id":"`+o.integration+`","from":"`+
			time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+`","to":"`+time.Now().Add(time.Minute).UTC().Format(time.RFC3339)+`"}`)
		if status != http.StatusOK || st["total_events"] != float64(perOrg+copies) || st["success_count"] != float64(perOrg) || st["skipped_count"] != float64(copies) {
			t.Errorf("%s: stats %d %v, want %d events: %d successes, %d copies skipped", o.id, status, st, perOrg+copies, perOrg, copies)
		}
	}
}
