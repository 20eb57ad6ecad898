//go:build integration

package app_test

import (
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/auth"
)

// One org's single feed is mapped by three `erpstream process` processes when the org is spread
// (ERPSTREAM_ORG_SPREAD): its events land in every partition, each process maps those of its
// partitions and sends them to the org's partition, whose holder applies them. The holder is
// killed with SIGKILL mid-feed; the org's partition moves with its state, and every event is
// still applied once: one live entity and one success row per event, copies refused, the stats
// counting each once. Another org, not spread, shares the processes.
func TestIntegrationOneOrgsFeedIsMappedByThreeProcessorsAndSurvivesAKill(t *testing.T) {
	e := apptest.New(t)
	secret := []byte("spread-test-secret-0123456789abcdef")
	e.JWT = auth.JWTConfig{HS256Secret: secret}
	e.Kafka.SpreadOrgs = map[string]bool{"spread-big": true}
	e.Configure = func(cfg *app.Config) { cfg.Services = []string{app.Ingest, app.Query, app.Project} }
	e.Start()
	big, small := newScaleOrg(t, e, secret, "spread-big"), newScaleOrg(t, e, secret, "spread-small")
	orgs := []*scaleOrg{big, small}
	procs := startThreeProcessors(t, e, "spread", -1)
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
	// Every process maps a share of the one org's feed before the kill.
	apptest.WaitFor(t, func() bool {
		mapping := 0
		for _, p := range procs {
			if p.metric("erpstream_processor_mapped_away_events_total") > 0 {
				mapping++
			}
		}
		return mapping >= 2 && big.feed.sent.Load() >= bigEvents/3
	})
	victim, most := 0, -1.0 // the org's partition's holder writes its outcomes: the most events
	for i, p := range procs {
		away := p.metric("erpstream_processor_mapped_away_events_total")
		outcomes := p.metric("erpstream_processor_events_total")
		t.Logf("instance %d: %v of the spread org's events mapped for its partition, %v outcomes written", i+1, away, outcomes)
		if outcomes > most {
			victim, most = i, outcomes
		}
	}
	t.Logf("SIGKILL instance %d (holds the spread org's partition) after %d of its events accepted", victim+1, big.feed.sent.Load())
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
		t.Logf("instance %d: %v events mapped for the spread org's partition since its start", i+1, p.metric("erpstream_processor_mapped_away_events_total"))
	}
	assertEachEventOnce(t, e, []*scaleOrg{big}, bigEvents, copies)
	assertEachEventOnce(t, e, []*scaleOrg{small}, smallEvents, copies)
}
