package processor

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// relayoutMemoryKeys is how many keys relayout's index of one partition holds in memory (about
// 100 B each, so about 100 MB) before it moves to disk. A variable so tests can make it spill.
var relayoutMemoryKeys = 1_000_000

// movedIndex is relayout's index of one partition: the last offset of every key outside its
// org's partition, a later tombstone's included. It is a map up to relayoutMemoryKeys keys, then
// a Pebble store in a directory of its own under os.TempDir() ($TMPDIR), removed when done.
// Pinning an org of hundreds of millions of states moves all of them, which in memory would ask
// tens of GB of the command that runs it.
type movedIndex struct {
	log   *slog.Logger
	where string // the partition, for the log
	mem   map[string]int64

	dir   string // the store's directory once the index spilled to disk
	db    *pebble.DB
	batch *pebble.Batch // committed before a read
	noDir bool          // the temporary directory could not be used: stay in memory
}

func newMovedIndex(log *slog.Logger, topic string, part int32) *movedIndex {
	return &movedIndex{log: log, where: fmt.Sprintf("%s/%d", topic, part), mem: map[string]int64{}}
}

func (ix *movedIndex) empty() bool { return ix.db == nil && len(ix.mem) == 0 }

// set records key's offset as its last.
func (ix *movedIndex) set(key []byte, offset int64) error {
	if ix.db == nil {
		if _, ok := ix.mem[string(key)]; ok || len(ix.mem) < relayoutMemoryKeys || ix.noDir {
			ix.mem[string(key)] = offset
			return nil
		}
		if err := ix.spill(); err != nil {
			return err
		}
		if ix.db == nil { // stays in memory
			ix.mem[string(key)] = offset
			return nil
		}
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(offset))
	if err := ix.batch.Set(key, v[:], nil); err != nil {
		return err
	}
	if ix.batch.Len() >= 4<<20 {
		return ix.commit()
	}
	return nil
}

// lastOffset is the offset set last for key; ok is false for a key never set.
func (ix *movedIndex) lastOffset(key []byte) (offset int64, ok bool, err error) {
	if ix.db == nil {
		offset, ok = ix.mem[string(key)]
		return offset, ok, nil
	}
	if !ix.batch.Empty() {
		if err := ix.commit(); err != nil {
			return 0, false, err
		}
	}
	// getValue reads through the bottom level's Bloom filters too (DB.Get does not): most
	// records a partition holds are not moved, so most lookups find nothing.
	v, err := getValue(ix.db, key)
	if err != nil || v == nil {
		return 0, false, err
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// spill moves the index to a Pebble store in a new temporary directory. Without one it logs
// why and goes on in memory, as relayout did before it had the store.
func (ix *movedIndex) spill() error {
	dir, err := os.MkdirTemp("", "erpstream-relayout-")
	if err == nil {
		// The memtables are reserved in the block cache (statestore_pebble.go): 64 MiB beyond
		// them are for blocks.
		cache := pebble.NewCache(64<<20 + 2*indexMemTableBytes)
		ix.db, err = pebble.Open(dir, indexOptions(cache))
		cache.Unref() // the store holds its own reference
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}
	if err != nil {
		ix.noDir = true
		ix.log.Warn("relayout: the index of the keys to move stays in memory (about 100 B a key): no temporary directory for it; set TMPDIR to a writable directory with room",
			"partition", ix.where, "keys", len(ix.mem), "err", err)
		return nil
	}
	ix.dir = dir
	ix.batch = ix.db.NewBatch()
	ix.log.Info("relayout: the index of the keys to move continues on disk", "partition", ix.where, "keys", len(ix.mem), "dir", dir)
	for k, off := range ix.mem {
		if err := ix.set([]byte(k), off); err != nil {
			return err
		}
	}
	ix.mem = nil
	return nil
}

const indexMemTableBytes = 16 << 20

func indexOptions(cache *pebble.Cache) *pebble.Options {
	opts := &pebble.Options{Cache: cache, DisableWAL: true, LoggerAndTracer: pebbleQuiet{}, MemTableSize: indexMemTableBytes}
	// The second pass asks for every record's key, most of which are not in the index when
	// few keys move: a Bloom filter answers those without reading blocks.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].FilterType = pebble.TableFilter
	}
	return opts
}

func (ix *movedIndex) commit() error {
	if err := ix.batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("relayout index %s: %w", ix.dir, err)
	}
	ix.batch = ix.db.NewBatch()
	return nil
}

// close removes the store, if there is one.
func (ix *movedIndex) close() {
	if ix.db == nil {
		return
	}
	_ = ix.batch.Close()
	_ = ix.db.Close()
	if err := os.RemoveAll(ix.dir); err != nil {
		ix.log.Warn("relayout: index directory not removed", "dir", ix.dir, "err", err)
	}
	ix.db = nil
}
