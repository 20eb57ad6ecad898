package processor

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/mapping"
)

// Map-ahead orgs (Config.MapAheadOrgs, ERPSTREAM_ORG_MAP_AHEAD) keep their events in the org's
// partition, in the order they were accepted, and still have them mapped by every instance. The
// instances that do not hold the org's partition read it from the processors' committed offset
// on, each mapping a share of its events (by the hash of the record key over the group's
// members), and write the extractions to the extractions topic. The instance holding the
// partition reads that topic beside its events and takes an event's extraction when one is
// there; when none is (a share of its own, a helper behind or gone, the use case changed), it
// maps the event itself. The extractions are a cache: a missing or stale one costs CPU, never
// exactness, and nothing the applying instance does waits for them.

const (
	// aheadPolls is how far ahead of the committed offset the other instances map, in polls of
	// the applying instance: past its open transaction and the fetch after it.
	aheadPolls = 4
	// aheadRound is how often an instance looks at the group's members and committed offsets.
	aheadRound = 500 * time.Millisecond
	// aheadLookback is how old the extractions are that an instance given a partition reads.
	aheadLookback = time.Minute
	// aheadYieldBacklog: an instance with as many events waiting in its own partitions maps
	// nothing ahead for others, so another org's feed never slows the orgs it holds.
	aheadYieldBacklog = 1000
	// aheadMaxBytes bounds the extractions a partition's cache holds (wide fan-outs make large ones).
	aheadMaxBytes = 64 << 20
)

// aheadCache holds the extractions the other instances made for the events of the partitions
// this instance holds, until their events are mapped.
type aheadCache struct {
	mu    sync.Mutex
	max   int // per partition
	parts map[int32]*aheadPartition
}

type aheadPartition struct {
	floor    int64 // events below it are mapped: their extractions are of no use
	byOffset map[int64]aheadEntry
	bytes    int
}

type aheadEntry struct {
	eventID string
	mapped  []byte
}

func newAheadCache(max int) *aheadCache {
	return &aheadCache{max: max, parts: map[int32]*aheadPartition{}}
}

// put keeps an extraction for the event at part/offset, unless that event is mapped already or
// the partition holds as many as it may.
func (c *aheadCache) put(part int32, offset int64, eventID string, mapped []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ap := c.parts[part]
	if ap == nil {
		ap = &aheadPartition{floor: -1, byOffset: map[int64]aheadEntry{}}
		c.parts[part] = ap
	}
	if offset < ap.floor {
		return
	}
	if len(ap.byOffset) >= c.max || ap.bytes+len(mapped) > aheadMaxBytes {
		ap.deleteBelowFloor()
		if len(ap.byOffset) >= c.max || ap.bytes+len(mapped) > aheadMaxBytes {
			return // the holder maps the event itself
		}
	}
	ap.byOffset[offset] = aheadEntry{eventID: eventID, mapped: mapped}
	ap.bytes += len(mapped)
}

func (ap *aheadPartition) deleteBelowFloor() {
	for off, e := range ap.byOffset {
		if off < ap.floor {
			delete(ap.byOffset, off)
			ap.bytes -= len(e.mapped)
		}
	}
}

// take returns the extraction made for the event at part/offset (nil: none), and notes that the
// partition's events before it are mapped.
func (c *aheadCache) take(part int32, offset int64, eventID string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	ap := c.parts[part]
	if ap == nil {
		ap = &aheadPartition{byOffset: map[int64]aheadEntry{}}
		c.parts[part] = ap
	}
	ap.floor = max(ap.floor, offset+1)
	e, ok := ap.byOffset[offset]
	if !ok {
		return nil
	}
	delete(ap.byOffset, offset)
	ap.bytes -= len(e.mapped)
	if e.eventID != eventID {
		return nil // the topic was made again since: another event had this offset
	}
	return e.mapped
}

// drop forgets a partition this instance no longer reads the extractions of.
func (c *aheadCache) drop(part int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.parts, part)
}

// aheadExtraction is a record of the extractions topic: a mappedEvent and the event it is of.
type aheadExtraction struct {
	mappedEvent
	EventID string `json:"event_id"`
}

func aheadKey(part int32, offset int64) []byte {
	return strconv.AppendInt(append(strconv.AppendInt(nil, int64(part), 10), '/'), offset, 10)
}

func parseAheadKey(key []byte) (int32, int64, bool) {
	p, o, ok := strings.Cut(string(key), "/")
	if !ok {
		return 0, 0, false
	}
	part, err1 := strconv.ParseInt(p, 10, 32)
	offset, err2 := strconv.ParseInt(o, 10, 64)
	return int32(part), offset, err1 == nil && err2 == nil
}

// takeAhead puts the extraction another instance made for the event into ev.Mapped, where
// extract finds it; it reports whether there was one.
func (p *Processor) takeAhead(in *polledEvent) bool {
	if p.ahead == nil || !p.cfg.MapAheadOrgs[in.ev.OrgID] || len(in.ev.Mapped) > 0 || kafkax.IsCopy(in.rec) {
		return false
	}
	m := p.ahead.take(in.rec.Partition, in.rec.Offset, in.ev.EventID)
	if m == nil {
		return false
	}
	in.ev.Mapped = m
	p.aheadTaken.Inc()
	return true
}

// helped is an events partition of a map-ahead org this instance maps ahead in.
type helped struct {
	next      int64 // the next offset to read
	committed int64 // the processors' committed offset, as last fetched
	paused    bool  // fetching paused: next is a window past committed
}

// aheadReader is what one instance reads for the map-ahead orgs: the extractions of their
// partitions it holds, the events of those it does not.
type aheadReader struct {
	cl      *kgo.Client
	adm     *kadm.Client
	reading map[int32]bool    // events partitions whose extractions are read
	helping map[int32]*helped // events partitions mapped ahead in
	share   int               // this instance's share of the events mapped ahead (-1: none)
	members int               // the processors' group members
	xParts  int32             // the extractions topic's partitions (0: not known yet)
}

// mapAheadLoop runs until ctx ends: every round it reads the processors' group (its members, its
// committed offsets) and sets what this instance reads.
func (p *Processor) mapAheadLoop(ctx context.Context) {
	cl, err := kgo.NewClient(append(p.cfg.Kafka.ClientOpts(p.log, "map-ahead"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(aheadRound),
		kgo.FetchMaxPartitionBytes(8<<20),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(8<<20),
	)...)
	if err != nil {
		p.log.Error("map ahead: no Kafka client; map-ahead orgs' events are mapped by the instance holding their partition alone", "err", err)
		return
	}
	defer cl.Close()
	a := &aheadReader{cl: cl, adm: kadm.NewClient(cl), reading: map[int32]bool{}, helping: map[int32]*helped{}, share: -1}
	var lastRound time.Time
	for ctx.Err() == nil {
		if time.Since(lastRound) >= aheadRound {
			lastRound = time.Now()
			p.aheadRound(ctx, a)
		}
		pctx, cancel := context.WithTimeout(ctx, aheadRound)
		fetches := cl.PollRecords(pctx, 1000)
		cancel()
		fetches.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case p.cfg.Topics.Extractions:
				p.keepExtraction(r, a.reading)
			case p.cfg.Topics.Events:
				if h := a.helping[r.Partition]; h != nil {
					p.mapAheadOne(ctx, a, r, h)
				}
			}
		})
	}
}

// extractionsPartition is where the extractions of an events partition go: the same number
// while the extractions topic has as many partitions.
func (a *aheadReader) extractionsPartition(part int32) int32 { return part % a.xParts }

// aheadRound sets what the instance reads and its share of the events it maps ahead.
func (p *Processor) aheadRound(ctx context.Context, a *aheadReader) {
	n := p.entities.partitions
	if n == 0 {
		return
	}
	if a.xParts == 0 {
		topics, err := a.adm.ListTopics(ctx, p.cfg.Topics.Extractions)
		if err != nil || topics[p.cfg.Topics.Extractions].Err != nil || len(topics[p.cfg.Topics.Extractions].Partitions) == 0 {
			return
		}
		a.xParts = int32(len(topics[p.cfg.Topics.Extractions].Partitions))
	}
	homes := map[int32]bool{}
	for org := range p.cfg.MapAheadOrgs {
		homes[p.cfg.Topics.OrgPartition([]byte(org), n)] = true
	}
	a.share, a.members = -1, 0
	if groups, err := a.adm.DescribeGroups(ctx, p.cfg.Group); err == nil {
		if g, ok := groups[p.cfg.Group]; ok && g.Err == nil {
			me, _ := p.memberID.Load().(string)
			a.share, a.members = aheadShare(g, p.cfg.Topics.Events, me)
		}
	}
	committed := map[int32]int64{}
	offsets, err := a.adm.FetchOffsets(ctx, p.cfg.Group)
	if err != nil {
		return // next round
	}
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == p.cfg.Topics.Events && o.Err == nil {
			committed[o.Partition] = o.At
		}
	})
	window := int64(aheadPolls * p.cfg.MaxPoll)
	xt, ev := p.cfg.Topics.Extractions, p.cfg.Topics.Events
	addRead, addHelp := map[int32]kgo.Offset{}, map[int32]kgo.Offset{}
	var dropRead, dropHelp, resume []int32
	setTo := map[int32]kgo.EpochOffset{}
	for part := range homes {
		if p.owns(part) {
			if a.helping[part] != nil {
				delete(a.helping, part)
				dropHelp = append(dropHelp, part)
			}
			if !a.reading[part] {
				p.log.Info("taking the extractions other instances map ahead for a map-ahead org's partition", "partition", part)
				a.reading[part] = true
				addRead[a.extractionsPartition(part)] = kgo.NewOffset().AfterMilli(time.Now().Add(-aheadLookback).UnixMilli())
			}
			continue
		}
		if a.reading[part] {
			delete(a.reading, part)
			dropRead = append(dropRead, a.extractionsPartition(part))
			p.ahead.drop(part)
		}
		at := max(committed[part], 0) // never committed: the processors start at the partition's start
		h := a.helping[part]
		if a.share < 0 || a.members < 2 {
			if h != nil {
				delete(a.helping, part)
				dropHelp = append(dropHelp, part)
			}
			continue
		}
		if h == nil {
			a.helping[part] = &helped{next: at, committed: at}
			addHelp[part] = kgo.NewOffset().At(at) // before the log start (retention): its start
			p.log.Info("mapping a map-ahead org's events ahead of the instance holding their partition",
				"partition", part, "from_offset", at, "share", a.share, "members", a.members)
			continue
		}
		h.committed = at
		if h.next < at { // the applying instance went past what this one mapped: skip ahead
			h.next = at
			setTo[part] = kgo.EpochOffset{Epoch: -1, Offset: at}
		}
		if h.paused && h.next < at+window {
			h.paused = false
			resume = append(resume, part)
		}
	}
	// An extractions partition stays read while another partition read maps to it.
	dropRead = slices.DeleteFunc(dropRead, func(x int32) bool {
		for part := range a.reading {
			if a.extractionsPartition(part) == x {
				return true
			}
		}
		return false
	})
	if remove := nonEmpty(map[string][]int32{xt: dropRead, ev: dropHelp}); len(remove) > 0 {
		a.cl.RemoveConsumePartitions(remove)
	}
	add := map[string]map[int32]kgo.Offset{}
	if len(addRead) > 0 {
		add[xt] = addRead
	}
	if len(addHelp) > 0 {
		add[ev] = addHelp
	}
	if len(add) > 0 {
		a.cl.AddConsumePartitions(add)
	}
	if len(setTo) > 0 {
		a.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{ev: setTo})
	}
	if len(resume) > 0 {
		a.cl.ResumeFetchPartitions(map[string][]int32{ev: resume})
	}
}

func nonEmpty(m map[string][]int32) map[string][]int32 {
	for k, v := range m {
		if len(v) == 0 {
			delete(m, k)
		}
	}
	return m
}

// keepExtraction puts an extractions record into the cache when it is of a partition this
// instance holds.
func (p *Processor) keepExtraction(r *kgo.Record, reading map[int32]bool) {
	part, offset, ok := parseAheadKey(r.Key)
	if !ok || !reading[part] {
		return
	}
	var x aheadExtraction
	if err := envelope.Decode(r.Value, &x); err != nil || x.EventID == "" {
		return
	}
	p.ahead.put(part, offset, x.EventID, r.Value)
}

// mapAheadOne maps one event of a partition this instance maps ahead in, when it is a map-ahead
// org's and in this instance's share, and writes its extraction.
func (p *Processor) mapAheadOne(ctx context.Context, a *aheadReader, r *kgo.Record, h *helped) {
	if h.paused || r.Offset < h.next {
		return // fetched before the partition was paused or set ahead
	}
	if r.Offset >= h.committed+int64(aheadPolls*p.cfg.MaxPoll) {
		// A window past the applying instance: wait for it to commit.
		h.paused = true
		h.next = r.Offset
		a.cl.PauseFetchPartitions(map[string][]int32{r.Topic: {r.Partition}})
		a.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.Topic: {r.Partition: {Epoch: -1, Offset: r.Offset}}})
		return
	}
	h.next = r.Offset + 1
	if a.members < 2 || a.share < 0 || kafkax.IsCopy(r) || p.ownWaiting.Load() >= aheadYieldBacklog {
		return
	}
	f := fnv.New32a()
	_, _ = f.Write(r.Key)
	if int(f.Sum32()%uint32(a.members)) != a.share {
		return
	}
	var ev envelope.Event
	if err := envelope.Decode(r.Value, &ev); err != nil || !p.cfg.MapAheadOrgs[ev.OrgID] || len(ev.Mapped) > 0 {
		return
	}
	uc, ok := p.cfg.Registry.Snapshot().UseCase(ev.OrgID, ev.UseCaseID)
	if !ok {
		return
	}
	x := aheadExtraction{mappedEvent: mappedEvent{UseCaseVersion: uc.Version}, EventID: ev.EventID}
	res, o := p.evaluate(ctx, &ev, uc)
	if res != nil {
		var err error
		if x.Extraction, err = mapping.EncodeExtraction(res); err != nil {
			return // the applying instance maps it itself
		}
	} else {
		x.Level, x.Code, x.Message = o.level, o.code, o.message
	}
	value, err := json.Marshal(x)
	if err != nil || len(value)+1024 > p.cfg.MaxRecordBytes {
		return
	}
	p.aheadMapped.Inc()
	a.cl.Produce(ctx, &kgo.Record{Topic: p.cfg.Topics.Extractions, Partition: a.extractionsPartition(r.Partition), Key: aheadKey(r.Partition, r.Offset), Value: value},
		func(_ *kgo.Record, err error) {
			if err != nil && ctx.Err() == nil {
				p.log.Debug("map ahead: extraction not written; the applying instance maps the event itself", "err", err)
			}
		})
}

// aheadShare gives this instance's place among the group's members that consume the events
// topic, and how many there are. A member subscribed to other topics is another deployment
// sharing the group's name on the same broker (another topic prefix): counting it would give
// shares nobody maps. Kafka names a group's subscriptions only while it is stable, so during a
// rebalance the answer is none (-1, 0): nothing is mapped ahead for that round.
func aheadShare(g kadm.DescribedGroup, events, me string) (share, members int) {
	if g.State != "Stable" {
		return -1, 0
	}
	ids := make([]string, 0, len(g.Members))
	for _, m := range g.Members {
		if sub, ok := m.Join.AsConsumer(); ok && slices.Contains(sub.Topics, events) {
			ids = append(ids, m.MemberID)
		}
	}
	slices.Sort(ids)
	share = -1
	if me != "" {
		share = slices.Index(ids, me)
	}
	return share, len(ids)
}
