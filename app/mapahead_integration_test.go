//go:build integration

package app_test

import (
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/auth"
)

// One org's feed mapped ahead (ERPSTREAM_ORG_MAP_AHEAD) by three `erpstream process` processes:
// its events stay in the org's partition, the two processes not holding it map their shares
// into the extractions topic, and the holder applies every event in order, taking the
// extractions that are there. The holder is killed with SIGKILL mid-feed; its partition moves,
// the instances' roles change with it, and every event is still applied once.
func TestIntegrationAMapAheadOrgsFeedSurvivesAKillOfItsApplyingProcess(t *testing.T) {
	e := apptest.New(t)
	secret := []byte("ahead-test-secret-0123456789abcdef")
	e.JWT = auth.JWTConfig{HS256Secret: secret}
	e.Configure = func(cfg *app.Config) { cfg.Services = []string{app.Ingest, app.Query, app.Project} }
	e.Start()
	big, small := newScaleOrg(t, e, secret, "ahead-big"), newScaleOrg(t, e, secret, "ahead-small")
	orgs := []*scaleOrg{big, small}
	bin := buildErpstream(t)
	var procs []*childProcess
	for _, id := range []string{"ahead-1", "ahead-2", "ahead-3"} {
		p := newProcessorProcess(t, e, bin, id)
		p.env = append(p.env, "ERPSTREAM_ORG_MAP_AHEAD=ahead-big")
		p.start()
		procs = append(procs, p)
	}
	apptest.WaitFor(t, func() bool {
		sum := 0.0
		for _, p := range procs {
			n := p.metric("erpstream_processor_assigned_partitions")
			if n <= 0 {
				return false
			}
			sum += n
		}
		return sum == 4
	})
	const bigEvents, smallEvents = 3000, 600
	feedDone := make(chan error, 2)
	go func() { feedDone <- big.feed.send(0, bigEvents) }()
	go func() { feedDone <- small.feed.send(0, smallEvents) }()
	// Both processes not holding the org's partition map a share of its feed before the kill.
	apptest.WaitFor(t, func() bool {
		mapping := 0
		for _, p := range procs {
			if p.metric("erpstream_processor_mapped_ahead_events_total") > 0 {
				mapping++
			}
		}
		return mapping >= 2 && big.feed.sent.Load() >= bigEvents/3
	})
	victim := -1
	for i, p := range procs {
		ahead, taken := p.metric("erpstream_processor_mapped_ahead_events_total"), p.metric("erpstream_processor_ahead_extractions_taken_total")
		t.Logf("instance %d: %v of the org's events mapped ahead, %v extractions taken", i+1, ahead, taken)
		if ahead == 0 {
			victim = i // the holder of the org's partition maps none ahead
		}
	}
	if victim < 0 {
		t.Fatal("every instance mapped ahead: none holds the org's partition")
	}
	t.Logf("SIGKILL instance %d (holds the org's partition) after %d of its events accepted", victim+1, big.feed.sent.Load())
	procs[victim].kill()
	time.Sleep(5 * time.Second)
	procs[victim].start()
	for range orgs {
		if err := <-feedDone; err != nil {
			t.Fatal(err)
		}
	}
	const copies = 200
	resendFirstEvents(t, orgs, copies)
	for i, p := range procs {
		t.Logf("instance %d since its start: %v mapped ahead, %v extractions taken", i+1,
			p.metric("erpstream_processor_mapped_ahead_events_total"), p.metric("erpstream_processor_ahead_extractions_taken_total"))
	}
	assertEachEventOnce(t, e, []*scaleOrg{big}, bigEvents, copies)
	assertEachEventOnce(t, e, []*scaleOrg{small}, smallEvents, copies)
}
