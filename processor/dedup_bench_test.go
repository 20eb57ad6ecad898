package processor

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
)

// BenchmarkDedupMarksByCount marks events (deduplication ids of the length ingest keys carry:
// org, integration and use case ids, then the id) as committed transactions do, a duplicate check
// and a mark per event in batches of 5,000, in the memory store and in the disk store (the entity
// states' Pebble store), at the counts ERPSTREAM_BENCH_MARKS lists (default 1,000,000; make bench
// adds 10,000,000 on disk). It reports the heap held afterwards and the time per mark: a day of
// marks is one per event with a deduplication id.
func BenchmarkDedupMarksByCount(b *testing.B) {
	counts, stores := benchCountsAndStores(b, "ERPSTREAM_BENCH_MARKS")
	const prefix = "5b0e8d1c-2a43-4f6e-9b7a-0c1d2e3f4a5b/7a245b43-1f24-4d0c-aa76-268061ee063e/0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a/"
	for _, kind := range stores {
		for _, n := range counts {
			b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
				for range b.N {
					d := newDedupStore(kafkatest.Quiet())
					var states *pebbleStates
					dir := b.TempDir()
					if kind == "disk" {
						var err error
						if states, err = openPebbleStates(dir, "bench"); err != nil {
							b.Fatal(err)
						}
						if err := d.openDisk(states.db, "bench-dedup"); err != nil {
							b.Fatal(err)
						}
					} else {
						d.committed.reset([]int32{0})
					}
					runtime.GC()
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					b.ResetTimer()
					at := int64(1_764_000_000_000)
					for i := range n {
						key := prefix + "IDOC-" + strconv.Itoa(i)
						at += 3 // a day of receipts is about 29 M marks at this spacing
						if d.duplicate(0, key, at) {
							b.Fatalf("mark %d found before it was made", i)
						}
						d.stage(0, key, at)
						if (i+1)%5000 == 0 || i == n-1 {
							d.commit(map[int32]int64{0: int64(i + 1)})
						}
					}
					b.StopTimer()
					runtime.GC()
					runtime.ReadMemStats(&after)
					if d.size() != n {
						b.Fatalf("%d marks held, want %d", d.size(), n)
					}
					if !d.duplicate(0, prefix+"IDOC-7", at) {
						b.Fatal("an early mark is not found")
					}
					heap := float64(after.HeapAlloc - min(before.HeapAlloc, after.HeapAlloc))
					b.ReportMetric(heap/(1<<20), "heap-MiB")
					b.ReportMetric(heap/float64(n), "B/mark")
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n)/1000, "µs/mark")
					runtime.KeepAlive(d)
					if states != nil {
						_ = states.close() // flushes the memtable
						b.ReportMetric(float64(dirBytes(b, dir))/float64(n), "disk-B/mark")
					}
					b.StartTimer()
				}
			})
		}
	}
}

func dirBytes(b *testing.B, dir string) int64 {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		info, err := e.Info()
		if err == nil {
			total += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return total
}
