package processor

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A standby instance (Config.Standby, ERPSTREAM_PROCESSOR_STANDBY=true) also follows the entity
// state and deduplication marks of the partitions it does not hold into its disk store, as Kafka
// Streams' standby replicas do. When it is given one of them (another instance crashed or left), its catch-up reads
// only what was written since its last round, seconds, instead of the partition's whole state:
// for one org with hundreds of millions of states (meter readings are entities) that is the
// difference between a failover of seconds and one of hours. The price is disk for every
// partition's states and the CPU to decode them (each instance stores the whole changelog).

// standbyInterval is how often a standby instance reads on the partitions it does not hold.
const standbyInterval = 5 * time.Second

// followOthers runs standby rounds until ctx ends.
func (p *Processor) followOthers(ctx context.Context) {
	cl, err := kgo.NewClient(p.cfg.Kafka.BaseOpts(p.log)...)
	if err != nil {
		p.log.Error("standby: no Kafka client; the partitions this instance does not hold are not followed", "err", err)
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	refused := map[int32]bool{} // partitions whose misplaced states were reported once
	tick := time.NewTicker(p.cfg.StandbyInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.standbyRound(ctx, adm, refused)
	}
}

// standbyRound reads on every partition this instance does not hold that has states or
// deduplication marks its store has not read yet.
func (p *Processor) standbyRound(ctx context.Context, adm *kadm.Client, refused map[int32]bool) {
	stateTopic, dedupTopic := p.cfg.Topics.EntityState, p.cfg.Topics.Dedup
	ends, err := adm.ListCommittedOffsets(ctx, stateTopic, dedupTopic)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Debug("standby: end offsets not listed; next round", "err", err)
		}
		return
	}
	s, d := p.entities, p.dedup
	s.mu.RLock()
	statesAt := s.committed.positions()
	s.mu.RUnlock()
	var marksAt map[int32]int64
	if d.onDisk() {
		d.mu.Lock()
		marksAt = d.committed.positions()
		d.mu.Unlock()
	}
	behind := func(topic string, part int32, at map[int32]int64) bool {
		end, ok := ends.Lookup(topic, part)
		return ok && end.Err == nil && end.Offset > at[part]
	}
	for part := range s.partitions {
		states, marks := behind(stateTopic, part, statesAt), marksAt != nil && behind(dedupTopic, part, marksAt)
		if (!states && !marks) || p.owns(part) {
			continue
		}
		// A partition being caught up (it was just given to this instance) is left to that.
		if !s.reading[part].TryLock() {
			continue
		}
		var read int
		err = nil
		if marks && !p.owns(part) {
			read, err = d.readChangelog(ctx, p.cfg.Kafka, dedupTopic, []int32{part}, slog.LevelDebug)
			d.followed.Add(int64(read))
		}
		if states && err == nil && !p.owns(part) {
			read, err = s.readChangelog(ctx, p.cfg.Kafka, stateTopic, []int32{part}, slog.LevelDebug)
			s.followed.Add(int64(read))
		}
		s.reading[part].Unlock()
		if err != nil && ctx.Err() == nil && !refused[part] {
			refused[part] = true
			p.log.Warn("standby: partition not followed", "partition", part, "err", err)
		}
	}
}
