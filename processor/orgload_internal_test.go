package processor

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/envelope"
)

// An org is held back while it takes more than its share of the instance's mapping time and
// other orgs' events wait; it is released when either ends. Orgs of equal load, an instance that
// keeps up, and an org alone on the instance are never held back.
func TestAnOrgOverItsShareWhileOthersWaitIsHeldBack(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	owned := map[int32]bool{0: true, 1: true}
	l := newOrgLoad(30*time.Second, "erp.org-load", func(p int32) bool { return owned[p] })
	l.now = func() time.Time { return now }
	said := func() map[string]envelope.OrgLoad {
		out := map[string]envelope.OrgLoad{}
		for _, r := range l.due(0) {
			var v envelope.OrgLoad
			if err := json.Unmarshal(r.Value, &v); err != nil || r.Topic != "erp.org-load" || string(r.Key) != v.Org {
				t.Fatalf("record %s %s: %v", r.Key, r.Value, err)
			}
			out[v.Org] = v
		}
		return out
	}
	// A minute in which big spends 45 s and small 5 s, 2,000 events behind.
	for range 60 {
		l.spent("big", 750*time.Millisecond)
		l.spent("small", 80*time.Millisecond)
		now = now.Add(time.Second)
	}
	l.behind(0, 1500)
	l.behind(1, 500)
	got := said()
	if len(got) != 1 || got["big"].HoldMs != loadHold.Milliseconds() || got["big"].LimitMs != 30_000 || got["big"].MappingMs < 35_000 {
		t.Fatalf("said %+v, want big held back for %v", got, loadHold)
	}
	if again := said(); len(again) != 0 {
		t.Fatalf("said again at once: %+v (at most every %v)", again, loadEvery)
	}
	now = now.Add(loadEvery)
	if again := said(); again["big"].HoldMs == 0 {
		t.Fatalf("a hold is said again while it lasts: %+v", again)
	}
	// The instance catches up: nobody waits, big is released.
	l.behind(0, 10)
	now = now.Add(loadEvery)
	if got := said(); len(got) != 1 || got["big"].HoldMs != 0 {
		t.Fatalf("caught up: said %+v, want big released", got)
	}
	if got := said(); len(got) != 0 {
		t.Fatalf("said %+v after the release, want nothing", got)
	}
	// Events polled and not mapped yet wait as well.
	now = now.Add(loadEvery)
	l.spent("big", 20*time.Second)
	l.spent("small", time.Second)
	if got := l.due(2000); got == nil || len(got) != 1 {
		t.Fatalf("2,000 events of the poll unmapped: said %d records, want big held back", len(got))
	}
	now = now.Add(loadEvery)
	if got := said(); len(got) != 1 || got["big"].HoldMs != 0 {
		t.Fatalf("all mapped: said %+v, want big released", got)
	}
	// A revoked partition's backlog no longer counts.
	l.behind(0, 5000)
	delete(owned, 0)
	now = now.Add(loadEvery)
	if got := said(); len(got) != 0 {
		t.Fatalf("behind only in a partition the instance no longer holds: said %+v", got)
	}

	for _, c := range []struct {
		name  string
		spend map[string]time.Duration // per second, for a minute
	}{
		{"two orgs of equal load over the share", map[string]time.Duration{"a": 700 * time.Millisecond, "b": 740 * time.Millisecond}},
		{"an org alone", map[string]time.Duration{"a": 900 * time.Millisecond}},
		{"under the share", map[string]time.Duration{"a": 400 * time.Millisecond, "b": 20 * time.Millisecond}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l = newOrgLoad(30*time.Second, "erp.org-load", func(int32) bool { return true })
			l.now = func() time.Time { return now }
			for range 60 {
				for org, d := range c.spend {
					l.spent(org, d)
				}
				now = now.Add(time.Second)
			}
			l.behind(0, 100_000)
			if got := said(); len(got) != 0 {
				t.Fatalf("said %+v, want nothing", got)
			}
		})
	}
	// A minute later the spending is forgotten.
	now = now.Add(2 * time.Minute)
	l.due(0)
	if len(l.orgs) != 0 {
		t.Fatalf("orgs without mapping time in the last minute kept: %v", l.orgs)
	}
	// Without a share nothing is measured or said.
	none := newOrgLoad(-1, "erp.org-load", func(int32) bool { return true })
	none.spent("big", time.Hour)
	if len(none.orgs) != 0 || none.due(0) != nil {
		t.Fatal("a disabled share measured or said something")
	}
}
