package processor

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/mapping"
)

// entityState is what the processor knows of one entity: enough to apply relation appends,
// deletes of missing entities and soft-deleted matches, not its attributes (memory).
type entityState struct {
	// Org owns the entity: a lookup never returns another org's entity, even for a crafted
	// collision of lookup keys. States written before the field existed have none.
	Org         string                                    `json:"o,omitempty"`
	Schema      string                                    `json:"s"`
	Deleted     bool                                      `json:"d,omitempty"`
	Placeholder bool                                      `json:"p,omitempty"` // created only because something relates to it
	Phantom     bool                                      `json:"x,omitempty"` // deleted before it ever existed
	Version     uint64                                    `json:"v"`
	Relations   map[string][]mapping.ResolvedRelationItem `json:"r,omitempty"`
	Reading     *readingState                             `json:"m,omitempty"` // meter readings only
	Keys        attrKeys                                  `json:"k,omitempty"` // indexed lookup values
	// Arrays are the elements of attributes relation refs point into; RelRefs this entity's refs.
	Arrays  map[string][]refElement               `json:"a,omitempty"`
	RelRefs map[string][]mapping.RelationRefEntry `json:"rr,omitempty"`
	Price   *priceFacts                           `json:"pr,omitempty"` // entities of schema price
	// LastWrite hashes the use case and attributes of the entity's last upsert (no-op detection).
	LastWrite uint64 `json:"h,omitempty"`
	// raw is the state's JSON as written to (or read from) the topic: the disk store keeps it
	// without encoding it again. States are never changed once built.
	raw []byte
}

// live is an entity that exists for lookups: written for real and not deleted.
func (s *entityState) live() bool { return s != nil && !s.Deleted && !s.Placeholder }

// softDeleted is an entity that existed and was deleted.
func (s *entityState) softDeleted() bool { return s != nil && s.Deleted && !s.Phantom }

// entityStore holds the state of every entity of the deployment, materialised from the
// compacted entity-state topic (which every processor instance reads whole, as a global table:
// events are partitioned by use case and deduplication id, not by entity). The committed states
// are in memory or on disk (statestore.go); this instance's own changes are staged per
// transaction in front of them and become committed when it commits; other instances' changes
// arrive through the topic. A change never replaces a newer version.
type entityStore struct {
	mu        sync.RWMutex
	committed committedStates
	staged    map[string]*entityState
	// stagedReadings holds the open transaction's readings by group; it may hold stale ids:
	// readers check the state.
	stagedReadings map[string]map[string]bool
	// stagedRelating indexes the open transaction's relations backwards (related id -> ids
	// relating to it); it may hold stale ids: readers check the state.
	stagedRelating map[string]map[string]bool
	// stagedByKey indexes the open transaction's entities by lookup key (lookup.go).
	stagedByKey map[lookupKey]idSet
	// names holds one copy of each schema and attribute name: decoded states would otherwise
	// carry a copy each.
	names map[string]string
	ready chan struct{}
	log   *slog.Logger
	// writer names this instance in the headers of the states it writes, so that following the
	// topic it can skip its own writes, applied already at commit, without decoding them.
	writer []byte
	// dir, when set, keeps the committed states on disk there (Pebble), opened by run.
	dir string
	// restored counts the state records read catching up given partitions, followed those
	// read by standby rounds (metrics, tests).
	restored, followed atomic.Int64
	// partitions is the changelog's partition count (the events topic's): where each org's states are.
	partitions int32
	// topics place orgs on partitions (Topics.OrgPartition: pinned or hashed).
	topics kafkax.Topics
	// reading holds one lock per changelog partition, taken while the partition is read: two
	// reads of one partition side by side (a standby round and a catch-up) would apply its
	// records out of order.
	reading []sync.Mutex
}

func newEntityStore(log *slog.Logger, instance string) *entityStore {
	return &entityStore{committed: newMemStates(), staged: map[string]*entityState{}, stagedReadings: map[string]map[string]bool{},
		stagedRelating: map[string]map[string]bool{},
		stagedByKey:    map[lookupKey]idSet{}, names: map[string]string{}, ready: make(chan struct{}), log: log, writer: []byte(instance)}
}

const (
	headerWriter  = "erp-state-writer"
	headerVersion = "erp-state-version"
)

// writtenBy are the headers of a state record this instance writes.
func (s *entityStore) writtenBy(version uint64) []kgo.RecordHeader {
	return []kgo.RecordHeader{{Key: headerWriter, Value: s.writer}, {Key: headerVersion, Value: strconv.AppendUint(nil, version, 10)}}
}

// appliedOwnWrite reports a record this instance wrote whose version (or a newer one) the store
// holds: its commit applied it. A write whose commit this instance took for failed (an
// ambiguous end of a transaction that did commit) is older than what the store holds, and is
// applied from the topic like anyone's.
func (s *entityStore) appliedOwnWrite(r *kgo.Record) bool {
	var own bool
	var version uint64
	for _, h := range r.Headers {
		switch h.Key {
		case headerWriter:
			own = bytes.Equal(h.Value, s.writer)
		case headerVersion:
			version, _ = strconv.ParseUint(string(h.Value), 10, 64)
		}
	}
	if !own || version == 0 {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	cur := s.committed.get(string(r.Key))
	return cur != nil && cur.Version >= version
}

func (s *entityStore) get(id string) *entityState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if st, ok := s.staged[id]; ok {
		return st
	}
	return s.committed.get(id)
}

func (s *entityStore) stage(id string, st *entityState) {
	s.mu.Lock()
	s.staged[id] = st
	if st.Reading != nil {
		addToSet(s.stagedReadings, st.Reading.Group, id)
		if !st.Deleted {
			for _, k := range readingKeys(st.Reading) {
				s.stagedByKey[k] = s.stagedByKey[k].add(id)
			}
		}
	}
	if st.findable() {
		s.indexKeysLocked(s.stagedByKey, id, st.Keys, true)
	}
	for _, items := range st.Relations {
		for _, it := range items {
			addToSet(s.stagedRelating, it.EntityID, id)
		}
	}
	s.mu.Unlock()
}

func addToSet(index map[string]map[string]bool, key, id string) {
	if index[key] == nil {
		index[key] = map[string]bool{}
	}
	index[key][id] = true
}

// commit makes the open transaction's states committed, with the changelog positions its own
// state records brought their partitions to (offset of the last one + 1).
func (s *entityStore) commit(positions map[int32]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changes := make([]stateChange, 0, len(s.staged))
	for id, st := range s.staged {
		s.internLocked(st)
		changes = append(changes, stateChange{id: id, st: st})
	}
	if err := s.committed.apply(changes, positions, true); err != nil {
		// The states are in the committed transaction's records: the topic brings them back.
		s.log.Error("committed entity states not stored locally; they are read back from the topic", "err", err)
	}
	clear(s.staged)
	clear(s.stagedReadings)
	clear(s.stagedRelating)
	clear(s.stagedByKey)
}

func (s *entityStore) abort() {
	s.mu.Lock()
	clear(s.staged)
	clear(s.stagedReadings)
	clear(s.stagedRelating)
	clear(s.stagedByKey)
	s.mu.Unlock()
}

// putLocked commits one state (tests, benchmarks).
func (s *entityStore) putLocked(id string, st *entityState) {
	s.internLocked(st)
	_ = s.committed.apply([]stateChange{{id: id, st: st}}, nil, true)
}

func (s *entityStore) internLocked(st *entityState) {
	intern := func(name string) string {
		if x, ok := s.names[name]; ok {
			return x
		}
		s.names[name] = name
		return name
	}
	st.Schema = intern(st.Schema)
	st.Org = intern(st.Org)
	for i := range st.Keys {
		st.Keys[i].Attr = intern(st.Keys[i].Attr)
	}
	for _, items := range st.Relations {
		for i := range items {
			items[i].Schema = intern(items[i].Schema)
		}
	}
}

// currentLocked is an entity's state as the running event sees it: its own changes (overlay),
// then the open transaction's, then the committed ones.
func (s *entityStore) currentLocked(id string, overlay map[string]*entityState) *entityState {
	if st, ok := overlay[id]; ok {
		return st
	}
	if st, ok := s.staged[id]; ok {
		return st
	}
	return s.committed.get(id)
}

// inScope lists the live entities of schema related to the scope entity in either direction:
// those relating to it, and those it relates to. overlay holds the running
// event's changes, which win over the store's. It reads at most limit related entities (of any
// schema, live or not): ok is false when the scope entity has more.
func (s *entityStore) inScope(scopeID, schema string, overlay map[string]*entityState, limit int) (_ []string, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	candidates := map[string]bool{}
	s.committed.eachRelating(scopeID, func(id string) bool { candidates[id] = true; return len(candidates) <= limit })
	if len(candidates) > limit {
		return nil, false
	}
	relates := func(st *entityState) bool {
		for _, items := range st.Relations {
			for _, it := range items {
				if it.EntityID == scopeID {
					return true
				}
			}
		}
		return false
	}
	for id := range s.stagedRelating[scopeID] { // earlier events of the open transaction
		candidates[id] = true
	}
	for id, st := range overlay {
		if relates(st) {
			candidates[id] = true
		}
	}
	relatedByScope := map[string]bool{}
	if scope := s.currentLocked(scopeID, overlay); scope != nil {
		for _, items := range scope.Relations {
			for _, it := range items {
				candidates[it.EntityID] = true
				relatedByScope[it.EntityID] = true
			}
		}
	}
	if len(candidates) > limit {
		return nil, false
	}
	// The indexes may be stale (an entity whose relations an uncommitted event changed is still
	// under the scope in the store's back-index): the current state decides.
	var out []string
	for id := range candidates {
		st := s.currentLocked(id, overlay)
		if st.live() && st.Schema == schema && (relatedByScope[id] || relates(st)) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, true
}

// readingsIn returns the live meter readings of a group (meter id / counter id) with their
// current state; overlay holds the running event's changes, which win over the store's. It reads
// at most limit readings of the group: ok is false when it has more.
func (s *entityStore) readingsIn(group string, overlay map[string]*entityState, limit int) (_ map[string]*entityState, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	candidates := map[string]bool{}
	s.committed.eachReading(group, func(id string) bool { candidates[id] = true; return len(candidates) <= limit })
	for id := range s.stagedReadings[group] {
		candidates[id] = true
	}
	for id, st := range overlay {
		if st.Reading != nil && st.Reading.Group == group {
			candidates[id] = true
		}
	}
	if len(candidates) > limit {
		return nil, false
	}
	out := map[string]*entityState{}
	for id := range candidates {
		st := s.currentLocked(id, overlay)
		if st != nil && !st.Deleted && st.Reading != nil && st.Reading.Group == group {
			out[id] = st
		}
	}
	return out, true
}

// open opens the committed states (on disk: the store under dir, checked against the topic's
// identity) before any partition is caught up; ready closes then.
func (s *entityStore) open(ctx context.Context, kc kafkax.Config, topic string) error {
	id, parts, err := topicIdentity(ctx, kc, topic, s)
	if err != nil {
		return err
	}
	s.partitions = int32(len(parts))
	if among := s.topics.PlacedAmongPartitions(); among > 0 && among < s.partitions {
		// Partitions added since this process verified the topics hold none of its orgs' states
		// until they are laid out anew (and the processors restarted).
		s.partitions = among
	}
	s.reading = make([]sync.Mutex, len(parts))
	if s.dir != "" {
		if err := s.openDisk(topic, id); err != nil {
			return err
		}
	} else {
		s.log.Info("entity state in memory: heap grows with the entities of the partitions held",
			"hint", "set ERPSTREAM_PROCESSOR_STATE_DIR to keep it on disk")
	}
	close(s.ready)
	return nil
}

// close flushes and closes the committed states.
func (s *entityStore) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed.close()
}

// catchUp reads changelog partitions from where the store has them (its positions: what it read
// or wrote itself last) to their last stable offsets. A partition is written by the instance that
// owns its events partition only, so an instance that is given a partition reads what the
// previous owners wrote since it last held it: all of it the first time, on disk only what
// followed its checkpoint.
func (s *entityStore) catchUp(ctx context.Context, kc kafkax.Config, topic string, partitions []int32) error {
	if len(partitions) == 0 {
		return nil
	}
	defer s.lockReading(partitions)()
	return s.catchUpLocked(ctx, kc, topic, partitions)
}

// catchUpLocked is catchUp for partitions whose reading locks the caller holds.
func (s *entityStore) catchUpLocked(ctx context.Context, kc kafkax.Config, topic string, partitions []int32) error {
	read, err := s.readChangelog(ctx, kc, topic, partitions, slog.LevelInfo)
	s.restored.Add(int64(read))
	return err
}

// lockReading takes the reading locks of partitions (in one order) and returns their unlock.
// The locks cover the partitions' deduplication marks too: they are read with their states.
func (s *entityStore) lockReading(partitions []int32) (unlock func()) {
	partitions = slices.Sorted(slices.Values(partitions))
	for _, p := range partitions {
		s.reading[p].Lock()
	}
	return func() {
		for _, p := range partitions {
			s.reading[p].Unlock()
		}
	}
}

// disk is the Pebble database of the committed states, nil when they are in memory.
func (s *entityStore) disk() *pebble.DB {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ps, ok := s.committed.(*pebbleStates); ok {
		return ps.db
	}
	return nil
}

// readChangelog is catchUp for partitions whose reading locks the caller holds; it logs what it
// read at level.
func (s *entityStore) readChangelog(ctx context.Context, kc kafkax.Config, topic string, partitions []int32, level slog.Level) (int, error) {
	start := time.Now()
	s.mu.RLock()
	from := s.committed.positions()
	s.mu.RUnlock()
	offsets := map[int32]kgo.Offset{}
	for _, p := range partitions {
		if at, ok := from[p]; ok {
			offsets[p] = kgo.NewOffset().At(at)
		} else {
			offsets[p] = kgo.NewOffset().AtStart()
		}
	}
	cl, err := kgo.NewClient(append(append(kc.BaseOpts(s.log), kafkax.ChangelogOpts()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return 0, fmt.Errorf("entity state client: %w", err)
	}
	defer cl.Close()
	// Records are applied in batches, with the changelog positions they bring the store to.
	var changes []stateChange
	positions := map[int32]int64{}
	// States of orgs that belong to another partition, not replaced by a tombstone later: the
	// layout of a version before the partitioning, which admin relayout moves.
	misplaced := map[string]int32{}
	flush := func() {
		if len(changes) == 0 && len(positions) == 0 {
			return
		}
		// A partition holding misplaced states keeps its position: the next catch-up reads them
		// again, and refuses again, until relayout has moved them.
		for _, part := range misplaced {
			delete(positions, part)
		}
		s.mu.Lock()
		for _, ch := range changes {
			s.internLocked(ch.st)
		}
		err := s.committed.apply(changes, positions, false)
		s.mu.Unlock()
		if err != nil {
			s.log.Error("entity states not stored locally", "err", err)
		}
		changes = changes[:0]
		clear(positions)
	}
	add := func(r *kgo.Record) {
		positions[r.Partition] = r.Offset + 1
		if r.Value == nil { // a tombstone: relayout moved the state to its org's partition
			delete(misplaced, string(r.Key))
			return
		}
		// This instance's own writes are applied already at commit (or, after a restart with
		// its disk, stored): skipped undecoded.
		if r.Attrs.IsControl() || s.appliedOwnWrite(r) {
			return
		}
		var st entityState
		if err := envelope.Decode(r.Value, &st); err == nil {
			st.raw = r.Value
			changes = append(changes, stateChange{id: string(r.Key), st: &st})
			if st.Org != "" && s.partitions > 0 && s.topics.OrgPartition([]byte(st.Org), s.partitions) != r.Partition {
				misplaced[string(r.Key)] = r.Partition
			}
		}
		if len(changes) >= 5000 {
			flush()
		}
	}
	read, err := kafkax.CatchUpFrom(ctx, cl, s.log, topic, partitions, from, add)
	flush()
	if err != nil {
		return read, fmt.Errorf("entity state: %w", err)
	}
	if len(misplaced) > 0 {
		// Mapping on would miss the states of these partitions' orgs that sit elsewhere: refuse,
		// loudly, until the operator moved them.
		return read, fmt.Errorf("%s holds %d states of orgs of other partitions (the layout of a version before events were partitioned by org, or events written by a producer that does not place them by org): "+
			"stop the processors and run `erpstream admin relayout` (docs/scaling.md, Upgrading)", topic, len(misplaced))
	}
	s.log.Log(ctx, level, "entity state caught up", "partitions", partitions, "records", read, "entities", s.size(),
		"ms", time.Since(start).Milliseconds(), "on_disk", s.dir != "")
	return read, nil
}

func (s *entityStore) size() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.committed.size()
}
