package processor

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/lru"
)

// pebbleStates keeps the committed states on disk in Pebble, with a bounded cache of decoded
// states in front. Memory stays flat however many entities there are, and a restart reads the
// changelog only from the positions stored with the states (the same batch), not from zero.
//
// Keys: s<id> state JSON; k<16-byte lookup key><id>, r<related id>\x00<id>, g<group>\x00<id>
// index entries; c<partition> the changelog position; n the entity count; t the changelog
// topic's id and the store's format (a store made from another topic of the same name, a
// recreated one, or in an older format is discarded and read again from the topic).
//
// Pebble's write-ahead log is off: after a crash the store is older than its last batches, and
// the positions stored with them are older in step, so reading the changelog from them again
// brings it back. The changelog topic is the source of truth; the disk is a cache of it.
type pebbleStates struct {
	db        *pebble.DB
	count     int64
	cache     *lru.Cache[string, *entityState] // decoded states; a nil state is one known absent
	closeOnce sync.Once
	release   func() // unlocks the store's directory (claimStoreDir)
}

const (
	prefixState    = 's'
	prefixKey      = 'k'
	prefixRelated  = 'r'
	prefixReading  = 'g'
	prefixPosition = 'c'
	keyCount       = "n"
	keyTopic       = "t"
	// storeFormat changes when what the store indexes does: format 2 indexes meter readings by
	// external id and day (readingkeys.go), which a store of format 1 lacks for its readings.
	storeFormat = "/format-2"
)

const (
	// blockCacheBytes is the store's cache of file blocks (indexes, Bloom filters, data).
	blockCacheBytes = 64 << 20
	// memTableBytes: 32 MiB (Pebble's default is 4 MiB) flushes an eighth as often: fewer small
	// tables for compactions to merge again, which cost a tenth of the processor's CPU.
	memTableBytes = 32 << 20
)

// StateCacheEntries bounds the decoded states kept in memory (about 450 B each for a contact).
const StateCacheEntries = 200_000

// openDisk opens (or creates) the store of topic under the entity store's directory, in place
// of the in-memory one.
func (s *entityStore) openDisk(topic, id string) error {
	dir, release, err := claimStoreDir(filepath.Join(s.dir, topic))
	if err != nil {
		return err
	}
	states, err := openPebbleStates(dir, id)
	if err != nil {
		release()
		return err
	}
	states.release = release
	s.mu.Lock()
	s.committed = states
	s.mu.Unlock()
	s.log.Info("entity state on disk", "dir", dir, "entities", states.size(), "checkpoints", len(states.positions()))
	return nil
}

// topicIdentity is the changelog topic's id and partitions, waiting out an unreachable broker.
func topicIdentity(ctx context.Context, kc kafkax.Config, topic string, s *entityStore) (string, []int32, error) {
	cl, err := kgo.NewClient(kc.BaseOpts(s.log)...)
	if err != nil {
		return "", nil, err
	}
	defer cl.Close()
	backoff := 100 * time.Millisecond
	for {
		details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
		if err == nil {
			if d, ok := details[topic]; ok && d.Err == nil && len(d.Partitions) > 0 {
				var parts []int32
				for p := range d.Partitions {
					parts = append(parts, p)
				}
				return fmt.Sprintf("%x", d.ID[:]), parts, nil
			} else if ok && d.Err != nil {
				err = d.Err
			} else {
				err = errors.New("topic not found")
			}
		}
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		s.log.Warn("cannot describe a state topic; retrying", "topic", topic, "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return "", nil, ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func openPebbleStates(dir, topicID string) (*pebbleStates, error) {
	open := func() (*pebble.DB, error) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		// Pebble reserves its memtables (the one written and the one flushing) in the block
		// cache: a cache only as large as they are caches no blocks at all, and every read
		// decompresses its blocks from the file again (measured: 17 µs a deduplication check).
		cache := pebble.NewCache(blockCacheBytes + 2*memTableBytes)
		defer cache.Unref()
		opts := &pebble.Options{Cache: cache, DisableWAL: true, LoggerAndTracer: pebbleQuiet{}, MemTableSize: memTableBytes}
		// Most reads of a feed of new entities find nothing: a Bloom filter on every level
		// (the bottom one too, where a miss would otherwise search; getValue reads it) answers
		// them without reading blocks. Tables written before without filters are read as before.
		for i := range opts.Levels {
			opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
			opts.Levels[i].FilterType = pebble.TableFilter
		}
		return pebble.Open(dir, opts)
	}
	db, err := open()
	if err != nil {
		// A store that does not open (damaged, or of an incompatible format) is a cache of the
		// topic like any other: it is rebuilt from the topic.
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			return nil, fmt.Errorf("entity state store %s: %w (and it cannot be removed: %v)", dir, err, rmErr)
		}
		if db, err = open(); err != nil {
			return nil, fmt.Errorf("entity state store %s: %w", dir, err)
		}
	}
	held, err := getValue(db, []byte(keyTopic))
	if err != nil {
		db.Close()
		return nil, err
	}
	identity := topicID + storeFormat
	if held != nil && string(held) != identity {
		// Another topic's states (the topic was recreated) or an older format: start empty.
		db.Close()
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if db, err = open(); err != nil {
			return nil, err
		}
	}
	if err := db.Set([]byte(keyTopic), []byte(identity), pebble.NoSync); err != nil {
		db.Close()
		return nil, err
	}
	p := &pebbleStates{db: db, cache: lru.New[string, *entityState](StateCacheEntries)}
	if raw, err := getValue(db, []byte(keyCount)); err != nil {
		db.Close()
		return nil, err
	} else if len(raw) == 8 {
		p.count = int64(binary.BigEndian.Uint64(raw))
	}
	return p, nil
}

// getValue reads one key (nil when absent) through an iterator that uses the bottom level's
// Bloom filters. DB.Get never reads them (Pebble's default, for stores where most reads find their
// key), so every read of a key this store does not hold (a new entity, a new deduplication id:
// most reads here) read and searched a data block of the bottom level. Measured at 2 M states:
// 9.0 µs per absent key with DB.Get, 3.4 µs with the filters; 9.3 against 10.5 µs for a present one.
func getValue(db *pebble.DB, key []byte) ([]byte, error) {
	it, err := db.NewIter(&pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if !it.SeekPrefixGE(key) || !bytes.Equal(it.Key(), key) {
		return nil, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, err
	}
	return bytes.Clone(v), nil
}

func stateKey(id string) []byte { return append([]byte{prefixState}, id...) }

func (p *pebbleStates) get(id string) *entityState { return p.read(id, true) }

// read is get, keeping what it read in the cache only when keep is set.
func (p *pebbleStates) read(id string, keep bool) *entityState {
	if st, ok := p.cache.Get(id); ok {
		return st
	}
	raw, err := getValue(p.db, stateKey(id))
	if err != nil {
		return nil
	}
	if raw == nil {
		// Remembered as absent: a new entity is looked up again when its state is written
		// (apply), and every write of a state goes through apply, which caches or refreshes it.
		if keep {
			p.cache.Put(id, nil)
		}
		return nil
	}
	var st entityState
	if envelope.Decode(raw, &st) != nil {
		return nil
	}
	if keep {
		p.cache.Put(id, &st)
	}
	return &st
}

func (p *pebbleStates) apply(changes []stateChange, positions map[int32]int64, keep bool) error {
	b := p.db.NewBatch()
	defer b.Close()
	// States written earlier in this batch are what later changes of the same entity replace.
	written := map[string]*entityState{}
	added := int64(0)
	for _, ch := range changes {
		cur, seen := written[ch.id]
		if !seen {
			cur = p.read(ch.id, keep)
		}
		if cur != nil && cur.Version > ch.st.Version {
			continue
		}
		if cur == nil {
			added++
		}
		raw := ch.st.raw
		if raw == nil {
			var err error
			if raw, err = json.Marshal(ch.st); err != nil {
				return err
			}
		}
		d := indexDiff(cur, ch.st)
		for _, rel := range d.dropRelated {
			_ = b.Delete(indexKey(prefixRelated, rel, ch.id), nil)
		}
		for _, k := range d.dropKeys {
			_ = b.Delete(lookupIndexKey(k, ch.id), nil)
		}
		if d.hadGroup {
			_ = b.Delete(indexKey(prefixReading, d.dropGroup, ch.id), nil)
		}
		if d.hasNewGroup {
			_ = b.Set(indexKey(prefixReading, d.addGroup, ch.id), nil, nil)
		}
		for _, k := range d.addKeys {
			_ = b.Set(lookupIndexKey(k, ch.id), nil, nil)
		}
		for _, rel := range d.addRelated {
			_ = b.Set(indexKey(prefixRelated, rel, ch.id), nil, nil)
		}
		_ = b.Set(stateKey(ch.id), raw, nil)
		written[ch.id] = ch.st
	}
	for part, at := range positions {
		v := binary.BigEndian.AppendUint64(nil, uint64(at))
		_ = b.Set(binary.BigEndian.AppendUint32([]byte{prefixPosition}, uint32(part)), v, nil)
	}
	if added > 0 {
		_ = b.Set([]byte(keyCount), binary.BigEndian.AppendUint64(nil, uint64(p.count+added)), nil)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	p.count += added
	for id, st := range written {
		if keep {
			p.cache.Put(id, st)
		} else {
			p.cache.Refresh(id, st)
		}
	}
	return nil
}

func indexKey(prefix byte, group, id string) []byte {
	k := make([]byte, 0, 2+len(group)+len(id))
	k = append(k, prefix)
	k = append(k, group...)
	k = append(k, 0)
	return append(k, id...)
}

func lookupIndexKey(k lookupKey, id string) []byte {
	out := make([]byte, 0, 1+len(k)+len(id))
	out = append(out, prefixKey)
	out = append(out, k[:]...)
	return append(out, id...)
}

// scan calls fn with the suffix of every key under prefix, until fn returns false.
func (p *pebbleStates) scan(prefix []byte, fn func(suffix []byte) bool) {
	upper := bytes.Clone(prefix)
	upper[len(upper)-1]++ // every prefix here ends in a byte below 0xff (0, or a hash byte handled below)
	if prefix[len(prefix)-1] == 0xff {
		upper = nil
	}
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if !bytes.HasPrefix(it.Key(), prefix) {
			break
		}
		if !fn(it.Key()[len(prefix):]) {
			return
		}
	}
}

func (p *pebbleStates) eachWithKey(k lookupKey, fn func(id string) bool) {
	prefix := append([]byte{prefixKey}, k[:]...)
	p.scan(prefix, func(id []byte) bool { return fn(string(id)) })
}

func (p *pebbleStates) countWithKey(k lookupKey, limit int) int {
	n := 0
	prefix := append([]byte{prefixKey}, k[:]...)
	p.scan(prefix, func([]byte) bool { n++; return n < limit })
	return n
}

func (p *pebbleStates) eachRelating(id string, fn func(id string) bool) {
	p.scan(indexKey(prefixRelated, id, ""), func(rel []byte) bool { return fn(string(rel)) })
}

func (p *pebbleStates) eachReading(group string, fn func(id string) bool) {
	p.scan(indexKey(prefixReading, group, ""), func(id []byte) bool { return fn(string(id)) })
}

func (p *pebbleStates) size() int { return int(p.count) }

func (p *pebbleStates) positions() map[int32]int64 { return readPositions(p.db, prefixPosition) }

// readPositions reads the changelog positions stored under prefix: <prefix><partition> -> offset.
func readPositions(db *pebble.DB, prefix byte) map[int32]int64 {
	out := map[int32]int64{}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
	if err != nil {
		return out
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) == 5 && len(v) == 8 {
			out[int32(binary.BigEndian.Uint32(k[1:]))] = int64(binary.BigEndian.Uint64(v))
		}
	}
	return out
}

func (p *pebbleStates) close() error {
	var err error
	p.closeOnce.Do(func() {
		// Without a write-ahead log the memtable is lost unless flushed: a clean stop keeps it.
		err = errors.Join(p.db.Flush(), p.db.Close())
		if p.release != nil {
			p.release()
		}
	})
	return err
}

// pebbleQuiet keeps Pebble's own log lines out of erpstream's log.
type pebbleQuiet struct{ pebble.LoggerAndTracer }

func (pebbleQuiet) Infof(string, ...any)  {}
func (pebbleQuiet) Errorf(string, ...any) {}
func (pebbleQuiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
func (pebbleQuiet) Eventf(context.Context, string, ...any) {}
func (pebbleQuiet) IsTracingEnabled(context.Context) bool  { return false }
