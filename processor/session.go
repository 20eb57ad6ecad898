package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// Run consumes until ctx ends. A consumer session that fails (the broker went away, the producer
// was fenced, a transaction could not end) is closed and a new one started after a backoff: the
// uncommitted batch is mapped again from the last committed offsets, and the process keeps
// running. Only ctx ends Run.
func (p *Processor) Run(ctx context.Context) error {
	select {
	case <-p.cfg.Registry.Ready():
	case <-ctx.Done():
		return nil
	}
	// The entity state is opened here and caught up per events partition when this instance is
	// given it (partitions.go): an instance holds the state of the orgs whose events it maps.
	if err := p.entities.open(ctx, p.cfg.Kafka, p.cfg.Topics.EntityState); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("processor: %w", err)
	}
	// Deduplication marks on disk share the entity states' store.
	if db := p.entities.disk(); db != nil {
		id, _, err := topicIdentity(ctx, p.cfg.Kafka, p.cfg.Topics.Dedup, p.entities)
		if err == nil {
			err = p.dedup.openDisk(db, id)
		}
		if err != nil {
			_ = p.entities.close()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("processor: deduplication marks: %w", err)
		}
	}
	// The state's store is closed (on disk: flushed) before Run returns.
	defer func() {
		if err := p.entities.close(); err != nil {
			p.log.Warn("entity state store did not close cleanly; it is caught up from its checkpoint at the next start", "err", err)
		}
	}()
	if p.cfg.Standby {
		standbyCtx, stopStandby := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() { defer close(stopped); p.followOthers(standbyCtx) }()
		// Stopped before the store closes (defers run last first).
		defer func() { stopStandby(); <-stopped }()
	}
	if p.ahead != nil {
		aheadCtx, stopAhead := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() { defer close(stopped); p.mapAheadLoop(aheadCtx) }()
		defer func() { stopAhead(); <-stopped }()
	}
	backoff := 250 * time.Millisecond
	for {
		began := time.Now()
		err := p.runSession(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > time.Minute {
			backoff = 250 * time.Millisecond // the session ran well for a while
		}
		p.restarts.Inc()
		if errors.Is(err, kerr.ProducerFenced) && p.instanceIDGiven {
			// Two running processes with one transactional id fence each other's transactions
			// in turn: exact still, but each mapping a fraction of what it could.
			p.log.Error("processor fenced by another producer with its transactional id: if this repeats, another running processor has "+
				"ERPSTREAM_INSTANCE_ID="+p.cfg.InstanceID+"; give every instance its own", "transactional_id", p.cfg.Group+"-"+p.cfg.InstanceID)
		}
		p.log.Warn("processor session failed; uncommitted events are mapped again by a new session", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// runSession consumes with one group transact session until it fails or ctx ends.
func (p *Processor) runSession(ctx context.Context) error {
	// Revocations noted by an earlier session are its own: this session's held events of a
	// partition given to it again must not be dropped for them.
	p.takeRevoked()
	p.forwardLogged.Store(false)
	sessionStart := time.Now()
	sess, err := kgo.NewGroupTransactSession(append(p.cfg.Kafka.ClientOpts(p.log, "processor"),
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.cfg.Topics.Events),
		// A crashed instance's partitions move after the session timeout: 15 s rather than
		// Kafka's 45 s default (heartbeats run beside the work, every 3 s).
		kgo.SessionTimeout(15*time.Second),
		// Every instance maps a share of the partitions (events are partitioned by org); a
		// rebalance moves only the partitions that change hands.
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.TransactionalID(p.cfg.Group+"-"+p.cfg.InstanceID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// One org's events are one partition: at franz-go's 1 MiB per partition a fetch held
		// about 2,500 events, and the transactions (5,000 events a poll) came out half as large.
		kgo.FetchMaxPartitionBytes(8<<20),
		// A partition resumed after its catch-up fetches with the broker's next fetch: at most
		// a second later when the instance's other partitions are idle (Kafka's default 5 s).
		kgo.FetchMaxWait(time.Second),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// A transaction maps for at most BatchBudget plus one event, so 20 s is ample; it is
		// also how long a crashed instance's open transaction holds read-committed consumers
		// (an instance restarted with the same ERPSTREAM_INSTANCE_ID aborts it at once).
		kgo.TransactionTimeout(20*time.Second),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2*time.Millisecond),
		// Dedup marks and entity states go to the partition number of their event
		// (Record.Partition); entity writes and monitoring rows by key.
		kgo.RecordPartitioner(p.cfg.Topics.Partitioner()),
		kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
			member, _ := cl.GroupMetadata()
			p.memberID.Store(member)
			p.log.Info("processor given events partitions", "partitions", assigned[p.cfg.Topics.Events])
			placedAmong := p.entities.partitions
			added := slices.DeleteFunc(slices.Clone(assigned[p.cfg.Topics.Events]), func(part int32) bool { return part < placedAmong })
			if len(added) > 0 {
				p.log.Warn("events partitions were added since this processor started: it places orgs among the first ones until it restarts "+
					"and forwards events it finds in the others; finish the change with `erpstream admin partitions N` (docs/scaling.md, Adding partitions)",
					"added", added, "placed_among", placedAmong)
			}
			p.assigned.Add(int64(len(assigned[p.cfg.Topics.Events])))
			p.markFresh(assigned[p.cfg.Topics.Events])
			// A partition paused for an earlier catch-up must fetch: its first records start
			// the new one (its deduplication marks and entity states; partitions.go).
			cl.ResumeFetchPartitions(map[string][]int32{p.cfg.Topics.Events: assigned[p.cfg.Topics.Events]})
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
			p.assigned.Add(-int64(len(revoked[p.cfg.Topics.Events])))
			p.markRevoked(revoked[p.cfg.Topics.Events])
			p.dedup.drop(revoked[p.cfg.Topics.Events])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			p.assigned.Add(-int64(len(lost[p.cfg.Topics.Events])))
			p.markRevoked(lost[p.cfg.Topics.Events])
			p.dedup.drop(lost[p.cfg.Topics.Events])
		}),
	)...)
	if err != nil {
		return fmt.Errorf("new session: %w", err)
	}
	defer sess.Close()
	p.log.Info("processor consuming", "topic", p.cfg.Topics.Events, "group", p.cfg.Group)

	// leftover is the tail of a poll that a transaction left for the next one (commit early);
	// waiting are the partitions paused until their state is caught up, held their polled
	// events (none after an abort: the session rewound them).
	var leftover []polledEvent
	held := heldEvents{}
	waiting := map[int32]bool{}
	// refused are the partitions stopped at a forwarded event outside its org's partition again
	// (refuseMisplaced): their events are held, their fetching paused, until an abort or a
	// rebalance brings them again.
	refused := map[int32]bool{}
	defer p.refused.Store(0)
	rctx, stopRestores := context.WithCancel(ctx)
	catchUps := p.newRestores(rctx)
	defer func() { stopRestores(); catchUps.wait() }()
	for {
		// Partitions taken away: their held events are the new owner's (not committed here).
		for _, part := range p.takeRevoked() {
			delete(held, part)
			delete(waiting, part)
			delete(refused, part)
		}
		p.refused.Store(int64(len(refused)))
		batch := leftover
		leftover = nil
		caught, err := catchUps.caughtUp()
		if err != nil {
			return err
		}
		// Partitions caught up together come in one poll's receive order again.
		var released [][]polledEvent
		var resume []int32
		for _, part := range caught {
			delete(waiting, part)
			if refused[part] {
				continue // caught up, but stopped (refuseMisplaced): its events stay held
			}
			released = append(released, held[part])
			delete(held, part)
			resume = append(resume, part)
		}
		batch = append(batch, mergeByReceipt(released)...)
		if len(resume) > 0 {
			sess.Client().ResumeFetchPartitions(map[string][]int32{p.cfg.Topics.Events: resume})
		}
		// A waiting partition given again while its catch-up ran is caught up again: its
		// fetching is paused, so no new records would start it.
		catchUps.start(slices.Collect(maps.Keys(waiting)))
		if len(batch) == 0 {
			batch = p.poll(ctx, sess, catchUps, len(waiting) > 0)
			if ctx.Err() != nil {
				return nil
			}
			if len(batch) == 0 {
				p.progress.Store(time.Now().UnixMilli())
				continue
			}
		}
		batch = p.refuseMisplaced(sess, batch, held, refused, sessionStart)
		batch = p.holdFresh(sess, catchUps, batch, held, waiting)
		if len(batch) == 0 {
			continue
		}
		// Compile outside the transaction: a new use-case version costs its compile time here,
		// not inside the transaction's timeout.
		p.prepare(ctx, batch)
		rest, committed, err := p.transact(ctx, sess, batch, held.all())
		if err != nil {
			return err
		}
		if !committed {
			// The session rewound every partition to its committed offsets: the held events
			// come again once their partitions (still waiting) fetch; a refused partition's
			// once it fetches again, and are judged again.
			clear(held)
			if len(refused) > 0 {
				sess.Client().ResumeFetchPartitions(map[string][]int32{p.cfg.Topics.Events: slices.Collect(maps.Keys(refused))})
				clear(refused)
				p.refused.Store(0)
			}
		}
		leftover = rest
	}
}

// poll waits for the next events; while events are held it also returns when a catch-up ends.
func (p *Processor) poll(ctx context.Context, sess *kgo.GroupTransactSession, catchUps *restores, holding bool) []polledEvent {
	pollCtx := ctx
	if holding {
		var cancel context.CancelFunc
		pollCtx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-catchUps.wake:
				cancel()
			case <-pollCtx.Done():
			}
		}()
	}
	fetches := sess.PollRecords(pollCtx, p.cfg.MaxPoll)
	if ctx.Err() != nil {
		return nil // shutting down
	}
	if pollCtx.Err() != nil {
		// Woken by a catch-up: what came with the wake-up is kept, the interruption is no error.
		return inReceiveOrder(fetches, p.log)
	}
	fetches.EachError(func(t string, part int32, err error) {
		p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
	})
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if n := len(fp.Records); n > 0 {
			p.load.behind(fp.Partition, fp.HighWatermark-fp.Records[n-1].Offset-1)
		}
	})
	p.ownWaiting.Store(p.load.waitingInOwned())
	return inReceiveOrder(fetches, p.log)
}

// misplaced reports an event outside its org's partition: the producer placed it by another
// placement (ERPSTREAM_ORG_PARTITIONS differs between services, or an org was moved before its
// events were mapped), and mapped here it would not find the org's states, which are in the
// org's partition.
func (p *Processor) misplaced(in polledEvent) bool {
	n := p.entities.partitions
	return n > 0 && p.cfg.Topics.OrgPartition([]byte(in.ev.OrgID), n) != in.rec.Partition
}

// forward is a misplaced event's copy for the org's partition, produced in the transaction that
// commits past the original: the event is mapped once, there, against the org's states (like a
// late event: versions keep it from overwriting newer writes).
func (p *Processor) forward(_ context.Context, rec *kgo.Record, ev *envelope.Event) []*kgo.Record {
	p.forwardedPending++
	if p.forwardLogged.CompareAndSwap(false, true) {
		p.log.Warn("events outside their org's partition are forwarded to it: a service places orgs differently (another ERPSTREAM_ORG_PARTITIONS, "+
			"or it started after partitions were added: this processor places among the partitions it started with); "+
			"give every service the same placement, and after adding partitions follow docs/scaling.md; logged once per session",
			"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "org", ev.OrgID, "placed_among", p.entities.partitions)
	}
	headers := append(slices.Clip(rec.Headers), kgo.RecordHeader{Key: kafkax.HeaderCopyOf, Value: fmt.Appendf(nil, "%d/%d", rec.Partition, rec.Offset)})
	return []*kgo.Record{{Topic: rec.Topic, Key: rec.Key, Value: rec.Value, Headers: headers}}
}

// refuseMisplaced stops each partition at its first event that was forwarded already, during this
// session, and is still outside its org's partition: the processors place the org differently,
// and forwarding it again would send it back and forth. That event and every later one of the
// partition are held (not mapped, their offsets not committed) and the partition's fetching
// paused; the instance's other partitions go on. A later session (the processors restarted with
// the placement put right) forwards such an event once more. It returns the events to map.
func (p *Processor) refuseMisplaced(sess *kgo.GroupTransactSession, batch []polledEvent, held heldEvents, refused map[int32]bool, sessionStart time.Time) []polledEvent {
	stopped := func(in polledEvent) bool {
		return refused[in.rec.Partition] || kafkax.IsCopy(in.rec) && in.rec.Timestamp.After(sessionStart) && p.misplaced(in)
	}
	if !slices.ContainsFunc(batch, stopped) {
		return batch
	}
	ready := batch[:0:0]
	var paused []int32
	for _, in := range batch {
		part := in.rec.Partition
		if !stopped(in) {
			ready = append(ready, in)
			continue
		}
		if !refused[part] {
			refused[part] = true
			paused = append(paused, part)
			p.log.Error("events partition stopped: an event forwarded to its org's partition is outside it again (the processors place the org differently); "+
				"give every service the same ERPSTREAM_ORG_PARTITIONS and restart the processors, which forward it once more (docs/scaling.md)",
				"topic", in.rec.Topic, "partition", part, "offset", in.rec.Offset, "org", in.ev.OrgID,
				"org_partition", p.cfg.Topics.OrgPartition([]byte(in.ev.OrgID), p.entities.partitions))
		}
		held[part] = append(held[part], in)
	}
	if len(paused) > 0 {
		sess.Client().PauseFetchPartitions(map[string][]int32{p.cfg.Topics.Events: paused})
	}
	p.refused.Store(int64(len(refused)))
	return ready
}

// holdFresh takes the events of partitions whose state is not caught up out of the batch, pauses
// their fetching and starts their catch-ups; it returns the events to map now.
func (p *Processor) holdFresh(sess *kgo.GroupTransactSession, catchUps *restores, batch []polledEvent, held heldEvents, waiting map[int32]bool) []polledEvent {
	notCaughtUp := p.freshNow()
	if len(notCaughtUp) == 0 {
		return batch
	}
	ready := batch[:0:0]
	var fresh, full []int32
	for _, in := range batch {
		part := in.rec.Partition
		// A partition added since the start holds no states to catch up: its events are
		// forwarded to their org's partition.
		if !notCaughtUp[part] || part >= p.entities.partitions {
			ready = append(ready, in)
			continue
		}
		if !waiting[part] {
			waiting[part] = true
			fresh = append(fresh, part)
		}
		held[part] = append(held[part], in)
		// Fetching is paused only once a poll's worth is held: a resumed partition fetches
		// again only after the broker's in-flight fetch returns (up to FetchMaxWait when the
		// instance's other partitions are idle), which a short catch-up should not cost.
		if len(held[part]) == p.cfg.MaxPoll {
			full = append(full, part)
		}
	}
	if len(full) > 0 {
		sess.Client().PauseFetchPartitions(map[string][]int32{p.cfg.Topics.Events: full})
	}
	catchUps.start(fresh)
	return ready
}

// transact maps a batch in one transaction, within the batch's time and record budgets, and
// returns the events it left for the next transaction. Their offsets are not committed: a crash
// before the next transaction maps them again, never loses them.
func (p *Processor) transact(ctx context.Context, sess *kgo.GroupTransactSession, batch, held []polledEvent) (rest []polledEvent, committed bool, err error) {
	if err := sess.Begin(); err != nil {
		return nil, false, fmt.Errorf("begin transaction: %w", err)
	}
	began := time.Now()
	promise := kgo.AbortingFirstErrPromise(sess.Client())
	positions := newStatePositions(p.cfg.Topics.EntityState, p.cfg.Topics.Dedup)
	records, done := 0, 0
	for _, in := range batch {
		if done > 0 && (time.Since(began) > p.cfg.BatchBudget || records >= p.cfg.MaxTransactionRecords) || ctx.Err() != nil {
			break
		}
		outs := p.process
		switch {
		case p.mapsAway(in):
			outs = p.mapAway // a spread org's: mapped here, applied in the org's partition
		case p.misplaced(in):
			outs = p.forward // to the org's partition, where its states are
		default:
			p.takeAhead(&in)
		}
		start := time.Now()
		for _, out := range outs(ctx, in.rec, &in.ev) {
			report := promise.Promise()
			sess.Produce(ctx, out, func(r *kgo.Record, err error) { positions.observe(r, err); report(r, err) })
			records++
		}
		p.load.spent(in.ev.OrgID, time.Since(start))
		done++
	}
	rest = batch[done:]
	for _, out := range p.sayLoad(len(rest) + len(held)) {
		sess.Produce(ctx, out, promise.Promise())
	}
	// The transaction always ends, also when ctx ended (shutdown): an open transaction left
	// behind would hold every read-committed consumer of its partitions until it times out. A
	// shutdown aborts it, since events mapped while ctx ended may carry its error.
	endCtx, cancelEnd := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancelEnd()
	if len(rest)+len(held) > 0 {
		// Held partitions were polled too: their offsets stay at their first held event.
		endCtx = kgo.PreTxnCommitFnContext(endCtx, commitBefore(append(slices.Clip(rest), held...)))
	}
	committed, err = sess.End(endCtx, kgo.TransactionEndTry(promise.Err() == nil && ctx.Err() == nil))
	if committed {
		p.forwarded.Add(float64(p.forwardedPending))
		p.mappedAwayTotal.Add(float64(p.mappedAwayPending))
		p.dedup.commit(positions.marks)
		p.entities.commit(positions.entities)
		for k, n := range p.pending {
			p.outcomes.WithLabelValues(k[0], k[1]).Add(float64(n))
		}
		p.batchTime.Observe(time.Since(began).Seconds())
		p.progress.Store(time.Now().UnixMilli())
		if len(rest) > 0 {
			p.early.Inc()
			p.log.Info("transaction committed early; the rest of the poll follows", "mapped", done, "left", len(rest), "records", records,
				"ms", time.Since(began).Milliseconds())
		}
	} else {
		p.dedup.abort()
		p.entities.abort()
		p.aborts.Inc()
		rest = nil // the session rewinds to the committed offsets: the whole batch comes again
	}
	clear(p.pending)
	p.forwardedPending = 0
	p.mappedAwayPending = 0
	if err != nil {
		if ctx.Err() != nil {
			return nil, committed, nil
		}
		return nil, committed, fmt.Errorf("end transaction: %w", err)
	}
	if !committed && ctx.Err() == nil {
		p.log.Warn("transaction aborted; the batch will be processed again", "records", len(batch), "produce_err", promise.Err())
	}
	return rest, committed, nil
}

// commitBefore makes a transaction commit, for each partition with events left over, the offset
// of its first left-over event instead of the end of the poll.
func commitBefore(rest []polledEvent) func(*kmsg.TxnOffsetCommitRequest) error {
	first := map[string]map[int32]*kgo.Record{}
	for _, in := range rest {
		parts := first[in.rec.Topic]
		if parts == nil {
			parts = map[int32]*kgo.Record{}
			first[in.rec.Topic] = parts
		}
		if r, ok := parts[in.rec.Partition]; !ok || in.rec.Offset < r.Offset {
			parts[in.rec.Partition] = in.rec
		}
	}
	return func(req *kmsg.TxnOffsetCommitRequest) error {
		for i := range req.Topics {
			t := &req.Topics[i]
			for j := range t.Partitions {
				if r, ok := first[t.Topic][t.Partitions[j].Partition]; ok {
					t.Partitions[j].Offset = r.Offset
					t.Partitions[j].LeaderEpoch = r.LeaderEpoch
				}
			}
		}
		return nil
	}
}

// ConfigWait bounds how long a batch waits for the configuration its events were accepted under.
const ConfigWait = 10 * time.Second

// prepare waits (bounded) until this process's registry has the configuration the batch's events
// were accepted under, then compiles their use cases' mappings (each once per version).
func (p *Processor) prepare(ctx context.Context, batch []polledEvent) {
	var want int64
	for _, in := range batch {
		want = max(want, in.ev.ConfigPosition)
	}
	if want > p.cfg.Registry.Snapshot().Position() {
		wctx, cancel := context.WithTimeout(ctx, ConfigWait)
		if err := p.cfg.Registry.WaitPosition(wctx, want); err != nil && ctx.Err() == nil {
			p.log.Warn("configuration did not reach the events' position in time; mapping with what is here",
				"want", want, "have", p.cfg.Registry.Snapshot().Position(), "err", err)
		}
		cancel()
	}
	snap := p.cfg.Registry.Snapshot()
	seen := map[[2]string]bool{}
	for _, in := range batch {
		key := [2]string{in.ev.OrgID, in.ev.UseCaseID}
		if seen[key] {
			continue
		}
		seen[key] = true
		if uc, ok := snap.UseCase(in.ev.OrgID, in.ev.UseCaseID); ok && uc.Enabled {
			_, _ = p.compiled(uc)
		}
	}
}

// polledEvent is a consumed record and its event.
type polledEvent struct {
	rec *kgo.Record
	ev  envelope.Event
}

// inReceiveOrder decodes a poll's records and merges the partitions by receive time. Events are
// partitioned by org, so each org's events are in order already; the merge keeps the order
// across an instance's partitions close to receive order (events written before events were
// partitioned by org, by deduplication id or event id, needed it to keep an entity's events in
// order). The merge keeps each partition's own order, so any prefix of the result is a prefix
// of every partition: a transaction that commits early commits exactly what it mapped.
func inReceiveOrder(fetches kgo.Fetches, log *slog.Logger) []polledEvent {
	var parts [][]polledEvent
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		var evs []polledEvent
		for _, rec := range fp.Records {
			var pe polledEvent
			if err := envelope.Decode(rec.Value, &pe.ev); err != nil {
				log.Error("undecodable event record; skipped", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
				continue
			}
			pe.rec = rec
			evs = append(evs, pe)
		}
		if len(evs) > 0 {
			parts = append(parts, evs)
		}
	})
	return mergeByReceipt(parts)
}

// mergeByReceipt merges partitions' events (each in offset order) by receive time.
func mergeByReceipt(parts [][]polledEvent) []polledEvent {
	total := 0
	for _, evs := range parts {
		total += len(evs)
	}
	out := make([]polledEvent, 0, total)
	heads := make([]int, len(parts))
	for len(out) < total {
		best := -1
		for i, evs := range parts {
			if heads[i] < len(evs) && (best < 0 || evs[heads[i]].ev.ReceivedAtUs < parts[best][heads[best]].ev.ReceivedAtUs) {
				best = i
			}
		}
		out = append(out, parts[best][heads[best]])
		heads[best]++
	}
	return out
}
