package processor

import (
	"encoding/json"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
)

const (
	// loadSlot and loadSlots make the minute an org's mapping time is summed over.
	loadSlot  = 10 * time.Second
	loadSlots = 6
	// loadEvery is how often the instance says which orgs are over their share.
	loadEvery = 5 * time.Second
	// loadHold is how long ingest holds an org's new events back after the last word that it is
	// over: three rounds, so a round lost with an aborted transaction does not release it, and
	// an instance that stopped saying so releases it by itself.
	loadHold = 15 * time.Second
	// loadWaiting is how many events must wait in the instance's partitions before an org over
	// its share is held back: below it nobody is delayed by it.
	loadWaiting = 1000
)

// orgLoad sums how long each org's events take this instance to map, over the last minute, and
// says which orgs take more than their share while other orgs' events wait behind them. Orgs
// that share a partition share its order, and an instance maps its partitions' events one after
// another, so an org of expensive events (each bounded on its own) would otherwise delay the
// others for as long as it sends; the ingest budget counts events, not what they cost to map.
type orgLoad struct {
	limit   time.Duration // an org's share of mapping time a minute; <= 0: no limit
	topic   string
	now     func() time.Time
	orgs    map[string]*orgSlots
	over    map[string]bool  // orgs last said to be over their share
	waiting map[int32]int64  // events behind the last polled one, per partition
	said    time.Time        // when the instance last said
	owns    func(int32) bool // the partitions the instance holds
}

type orgSlots struct {
	spent [loadSlots]time.Duration
	slot  [loadSlots]int64 // the slot number each entry of spent is of
}

func newOrgLoad(limit time.Duration, topic string, owns func(int32) bool) *orgLoad {
	if topic == "" {
		limit = 0 // nowhere to say it
	}
	return &orgLoad{limit: limit, topic: topic, now: time.Now, owns: owns,
		orgs: map[string]*orgSlots{}, over: map[string]bool{}, waiting: map[int32]int64{}}
}

// spent adds d to org's mapping time.
func (l *orgLoad) spent(org string, d time.Duration) {
	if l.limit <= 0 {
		return
	}
	o := l.orgs[org]
	if o == nil {
		o = &orgSlots{}
		l.orgs[org] = o
	}
	n := l.now().UnixNano() / int64(loadSlot)
	i := n % loadSlots
	if o.slot[i] != n {
		o.slot[i], o.spent[i] = n, 0
	}
	o.spent[i] += d
}

// behind records how many events wait in a partition after the last one polled.
func (l *orgLoad) behind(part int32, events int64) { l.waiting[part] = max(events, 0) }

// waitingInOwned is how many events wait, not polled yet, in the partitions the instance holds.
func (l *orgLoad) waitingInOwned() int64 {
	var waiting int64
	for part, n := range l.waiting {
		if l.owns(part) {
			waiting += n
		} else {
			delete(l.waiting, part)
		}
	}
	return waiting
}

func (o *orgSlots) lastMinute(now int64) time.Duration {
	var sum time.Duration
	for i := range loadSlots {
		if now-o.slot[i] < loadSlots {
			sum += o.spent[i]
		}
	}
	return sum
}

// due is what the instance says now, at most every loadEvery: a hold for every org over its
// share while others wait, a release for an org held before and no longer over. unmapped are
// the events polled and not mapped yet (waiting as well). Orgs without mapping time in the last
// minute are forgotten.
func (l *orgLoad) due(unmapped int) []*kgo.Record {
	now := l.now()
	if l.limit <= 0 || now.Sub(l.said) < loadEvery {
		return nil
	}
	l.said = now
	waiting := int64(unmapped) + l.waitingInOwned()
	slot := now.UnixNano() / int64(loadSlot)
	var total time.Duration
	spent := make(map[string]time.Duration, len(l.orgs))
	for org, o := range l.orgs {
		if d := o.lastMinute(slot); d > 0 {
			spent[org] = d
			total += d
		} else {
			delete(l.orgs, org)
		}
	}
	// Another org's events wait when the instance is behind and has mapped another org lately.
	contended := waiting >= loadWaiting && len(spent) > 1
	// An org is over when it takes more than its share and clearly more than an equal split of
	// the minute's mapping time: orgs of equal load are never held back for the noise between them.
	over := func(d time.Duration) bool {
		return contended && d > l.limit && d > total/time.Duration(max(len(spent), 1))*5/4
	}
	var out []*kgo.Record
	say := func(org string, d, hold time.Duration) {
		v, _ := json.Marshal(envelope.OrgLoad{Org: org, MappingMs: d.Milliseconds(), LimitMs: l.limit.Milliseconds(), HoldMs: hold.Milliseconds()})
		out = append(out, &kgo.Record{Topic: l.topic, Key: []byte(org), Value: v})
	}
	for org, d := range spent {
		if over(d) {
			say(org, d, loadHold)
			l.over[org] = true
		}
	}
	for org := range l.over {
		if d := spent[org]; !over(d) {
			say(org, d, 0)
			delete(l.over, org)
		}
	}
	return out
}

// sayLoad is what the instance says of its orgs' load now (orgLoad.due), logged and counted.
func (p *Processor) sayLoad(unmapped int) []*kgo.Record {
	out := p.load.due(unmapped)
	for _, r := range out {
		var said envelope.OrgLoad
		_ = json.Unmarshal(r.Value, &said)
		if said.HoldMs > 0 {
			p.held.Inc()
			if p.loadLogged[said.Org] {
				continue // said every few seconds while it lasts; logged once
			}
			p.loadLogged[said.Org] = true
			p.log.Warn("an org takes more than its share of mapping time while other orgs' events wait: ingest holds its new events back",
				"org", said.Org, "mapping_ms_last_minute", said.MappingMs, "share_ms", said.LimitMs, "hint", "ERPSTREAM_ORG_MAPPING_SECONDS_PER_MIN; docs/scaling.md")
		} else {
			delete(p.loadLogged, said.Org)
			p.log.Info("an org is back within its share of mapping time: ingest takes its events again", "org", said.Org, "mapping_ms_last_minute", said.MappingMs)
		}
	}
	if len(out) > 0 {
		p.overShare.Store(int64(len(p.load.over)))
	}
	return out
}
