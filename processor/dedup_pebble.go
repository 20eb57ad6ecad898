package processor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleMarks keeps the committed deduplication marks on disk, in the entity states' Pebble
// store (one cache, one memtable, one directory claim), under keys of their own:
//
//	D<key>                          first accepted receipt (8 bytes, ms)
//	E<partition><first seen><key>   expiry index, in receipt order per partition
//	P<partition>                    the dedup changelog position (its checkpoint)
//	T                               the dedup topic's id (marks of a recreated topic are discarded)
//
// A duplicate check is one point read, answered by the Bloom filters when the id is new (most
// are). Marks older than the window are deleted oldest first as receipts advance, by event time
// per partition (a partition mapped hours behind keeps the marks its events still need), at most
// twice as many per batch as the batch adds: the store holds about a day of marks, and a commit
// never stops for a large expiry.
type pebbleMarks struct {
	db *pebble.DB
	// watermark is the newest receipt per partition, prunedTo the expiry index key below which
	// a partition's entries are deleted.
	watermark map[int32]int64
	prunedTo  map[int32][]byte
	count     int64
}

const (
	prefixMark         = 'D'
	prefixMarkExpiry   = 'E'
	prefixMarkPosition = 'P'
	keyMarkTopic       = "T"
	keyMarkCount       = "N"
)

// markExpiryBudget is how many expired marks a batch deletes at least (plus two per mark it adds).
const markExpiryBudget = 1000

// openPebbleMarks uses db for the marks of the dedup topic topicID.
func openPebbleMarks(db *pebble.DB, topicID string) (*pebbleMarks, error) {
	held, err := getValue(db, []byte(keyMarkTopic))
	if err != nil {
		return nil, err
	}
	if held != nil && string(held) != topicID {
		// Marks of another topic of the same name (recreated): start empty.
		b := db.NewBatch()
		for _, prefix := range []byte{prefixMark, prefixMarkExpiry, prefixMarkPosition} {
			_ = b.DeleteRange([]byte{prefix}, []byte{prefix + 1}, nil)
		}
		_ = b.Delete([]byte(keyMarkCount), nil)
		if err := b.Commit(pebble.NoSync); err != nil {
			b.Close()
			return nil, err
		}
		b.Close()
	}
	if err := db.Set([]byte(keyMarkTopic), []byte(topicID), pebble.NoSync); err != nil {
		return nil, err
	}
	m := &pebbleMarks{db: db, watermark: map[int32]int64{}, prunedTo: map[int32][]byte{}}
	if raw, err := getValue(db, []byte(keyMarkCount)); err != nil {
		return nil, err
	} else if len(raw) == 8 {
		m.count = int64(binary.BigEndian.Uint64(raw))
	}
	return m, nil
}

func markKey(key string) []byte { return append([]byte{prefixMark}, key...) }

func markPartitionPrefix(prefix byte, partition int32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefix}, uint32(partition))
}

func markExpiryKey(partition int32, atMs int64, key string) []byte {
	k := markPartitionPrefix(prefixMarkExpiry, partition)
	k = binary.BigEndian.AppendUint64(k, uint64(atMs))
	return append(k, key...)
}

// firstSeen ignores the partition: a key (org, integration, use case, deduplication id) is in
// one partition only.
func (m *pebbleMarks) firstSeen(_ int32, key string) (int64, bool) {
	raw, err := getValue(m.db, markKey(key))
	if err != nil || len(raw) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(raw)), true
}

func (m *pebbleMarks) apply(marks []dedupMark, positions map[int32]int64) error {
	b := m.db.NewBatch()
	defer b.Close()
	// The count is of expiry entries: marks written less those expired. A key marked again
	// after its window counts twice until its first mark expires, and marks read again after a
	// crash (from an older checkpoint) until they expire: it is about the marks held, not exact,
	// and costs no read per mark.
	added := int64(len(marks))
	for _, mk := range marks {
		_ = b.Set(markKey(mk.key), binary.BigEndian.AppendUint64(nil, uint64(mk.atMs)), nil)
		_ = b.Set(markExpiryKey(mk.partition, mk.atMs, mk.key), nil, nil)
		if err := m.advance(mk.partition, mk.atMs); err != nil {
			return err
		}
	}
	for part, at := range positions {
		_ = b.Set(markPartitionPrefix(prefixMarkPosition, part), binary.BigEndian.AppendUint64(nil, uint64(at)), nil)
	}
	if added > 0 {
		_ = b.Set([]byte(keyMarkCount), binary.BigEndian.AppendUint64(nil, uint64(m.count+added)), nil)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	m.count += added
	// Expiry reads what was just written (a key marked again keeps its new mark), so it is a
	// batch of its own; a crash between the two leaves expired marks for the next one.
	return m.expire(markExpiryBudget + 2*len(marks))
}

// advance moves a partition's watermark; the first time, from the newest mark it has on disk.
func (m *pebbleMarks) advance(partition int32, atMs int64) error {
	if _, ok := m.watermark[partition]; !ok {
		newest, err := m.newestMark(partition)
		if err != nil {
			return err
		}
		m.watermark[partition] = newest
		m.prunedTo[partition] = markPartitionPrefix(prefixMarkExpiry, partition)
	}
	m.watermark[partition] = max(m.watermark[partition], atMs)
	return nil
}

func (m *pebbleMarks) newestMark(partition int32) (int64, error) {
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: markPartitionPrefix(prefixMarkExpiry, partition),
		UpperBound: markPartitionPrefix(prefixMarkExpiry, partition+1)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	k := it.Key()
	if len(k) < 13 {
		return 0, fmt.Errorf("dedup expiry key of %d bytes", len(k))
	}
	return int64(binary.BigEndian.Uint64(k[5:13])), nil
}

// expire deletes up to budget marks that are older than the window of their partition's
// watermark, oldest first.
func (m *pebbleMarks) expire(budget int) error {
	b := m.db.NewBatch()
	defer b.Close()
	removed := int64(0)
	for part, wm := range m.watermark {
		if budget <= 0 {
			break
		}
		cutoff := wm - DedupWindow.Milliseconds()
		if cutoff <= 0 {
			continue
		}
		from := m.prunedTo[part]
		until := binary.BigEndian.AppendUint64(markPartitionPrefix(prefixMarkExpiry, part), uint64(cutoff))
		if bytes.Compare(from, until) >= 0 {
			continue
		}
		it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: until})
		if err != nil {
			return err
		}
		next := until // the first entry not expired by this batch
		for it.First(); it.Valid(); it.Next() {
			if budget <= 0 {
				next = bytes.Clone(it.Key())
				break
			}
			k := it.Key()
			atMs, key := int64(binary.BigEndian.Uint64(k[5:13])), string(k[13:])
			// The key may have been marked again since (a copy after the window): that newer
			// mark has an entry of its own and stays.
			if first, ok := m.firstSeen(part, key); ok && first == atMs {
				_ = b.Delete(markKey(key), nil)
			}
			removed++
			// Point deletes, not a range deletion: every point read would have to check a range
			// tombstone (measured: 17 µs a mark instead of 1). The next expiry starts past them.
			_ = b.Delete(k, nil)
			budget--
		}
		err = errors.Join(it.Error(), it.Close())
		if err != nil {
			return err
		}
		m.prunedTo[part] = next
	}
	if b.Empty() {
		return nil
	}
	if removed > 0 {
		_ = b.Set([]byte(keyMarkCount), binary.BigEndian.AppendUint64(nil, uint64(max(m.count-removed, 0))), nil)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	m.count = max(m.count-removed, 0)
	return nil
}

func (m *pebbleMarks) positions() map[int32]int64 { return readPositions(m.db, prefixMarkPosition) }

// reset keeps the partition's marks: the catch-up reads on from its checkpoint.
func (m *pebbleMarks) reset([]int32) {}

// drop keeps them too: never read while another instance holds the partition, and brought up
// to date from the checkpoint if it comes back.
func (m *pebbleMarks) drop([]int32) {}

func (m *pebbleMarks) size() int { return int(m.count) }
