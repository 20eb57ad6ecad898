package processor

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
)

// BenchmarkMovedIndexOnDisk indexes and then looks up b.N entity ids (36-byte UUID keys) in
// relayout's index on disk, as the relayout of a pinned org of b.N states does; it reports the
// store's size per key and the heap in use at the end (flat as b.N grows: the keys are in
// Pebble, not the heap).
func BenchmarkMovedIndexOnDisk(b *testing.B) {
	defer func(keys int) { relayoutMemoryKeys = keys }(relayoutMemoryKeys)
	relayoutMemoryKeys = 0
	b.Setenv("TMPDIR", b.TempDir())
	ix := newMovedIndex(kafkatest.Quiet(), "erp.entity-state", 0)
	defer ix.close()
	key := func(i int) []byte { // name-based UUIDs look random
		h := uint64(i+1) * 0x9E3779B97F4A7C15
		l := (h ^ h>>29) * 0xBF58476D1CE4E5B9
		return fmt.Appendf(nil, "%08x-%04x-5%03x-8%03x-%012x", h>>32, h>>16&0xffff, h&0xfff, l>>52, l&0xffffffffffff)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := ix.set(key(i), int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	for i := range b.N {
		if at, ok, err := ix.lastOffset(key(i)); err != nil || !ok || at != int64(i) {
			b.Fatalf("key %d: %d %v %v", i, at, ok, err)
		}
	}
	b.StopTimer()
	var disk int64
	_ = filepath.WalkDir(ix.dir, func(_ string, d fs.DirEntry, err error) error {
		if info, infoErr := d.Info(); err == nil && infoErr == nil && !d.IsDir() {
			disk += info.Size()
		}
		return nil
	})
	b.ReportMetric(float64(disk)/float64(b.N), "disk-B/key")
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(m.HeapInuse)/(1<<20), "heap-MiB")
}
