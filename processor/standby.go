package processor

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A standby instance (Config.Standby, ERPSTREAM_PROCESSOR_STANDBY=true) also follows the entity
// state of the partitions it does not hold into its disk store, as Kafka Streams' standby
// replicas do. When it is given one of them (another instance crashed or left), its catch-up reads
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

// standbyRound reads on every partition this instance does not hold that has states its store
// has not read yet.
func (p *Processor) standbyRound(ctx context.Context, adm *kadm.Client, refused map[int32]bool) {
	topic := p.cfg.Topics.EntityState
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Debug("standby: end offsets not listed; next round", "err", err)
		}
		return
	}
	s := p.entities
	s.mu.RLock()
	at := s.committed.positions()
	s.mu.RUnlock()
	for part := range s.partitions {
		end, ok := ends.Lookup(topic, part)
		if !ok || end.Err != nil || end.Offset <= at[part] || p.owns(part) {
			continue
		}
		// A partition being caught up (it was just given to this instance) is left to that.
		if !s.reading[part].TryLock() {
			continue
		}
		var read int
		if !p.owns(part) {
			read, err = s.readChangelog(ctx, p.cfg.Kafka, topic, []int32{part}, slog.LevelDebug)
		}
		s.reading[part].Unlock()
		s.followed.Add(int64(read))
		if err != nil && ctx.Err() == nil && !refused[part] {
			refused[part] = true
			p.log.Warn("standby: partition not followed", "partition", part, "err", err)
		}
	}
}
