package processor

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/mapping"
)

// BenchmarkEntityStateMemory reports the heap the entity state takes per entity as restored from
// the topic: a contact with two indexed unique ids (customer number, email), and a contract with
// one indexed id and a relation to its contact.
func BenchmarkEntityStateMemory(b *testing.B) {
	const n = 100_000
	for _, kind := range []string{"contact", "contract"} {
		b.Run(kind, func(b *testing.B) {
			var perEntity float64
			for range b.N {
				records := make([][]byte, n)
				for i := range records {
					st := entityState{Schema: kind, Version: uint64(1_700_000_000_000_000 + i)}
					if kind == "contact" {
						st.Keys = attrKeys{{Attr: "customer_number", Key: keyOf("org", kind, "customer_number", fmt.Sprint("K-", i))},
							{Attr: "email", Key: keyOf("org", kind, "email", fmt.Sprintf("c%d@example.com", i))}}
					} else {
						st.Keys = attrKeys{{Attr: "contract_number", Key: keyOf("org", kind, "contract_number", fmt.Sprint("V-", i))}}
						st.Relations = map[string][]mapping.ResolvedRelationItem{"customer": {{EntityID: fmt.Sprintf("%036d", i), Schema: "contact"}}}
					}
					records[i], _ = json.Marshal(&st)
				}
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				s := newEntityStore(kafkatest.Quiet(), "test")
				for i, rec := range records {
					var st entityState
					if err := json.Unmarshal(rec, &st); err != nil {
						b.Fatal(err)
					}
					s.putLocked(fmt.Sprintf("%036d", i), &st)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perEntity = float64(after.HeapAlloc-before.HeapAlloc) / n
				runtime.KeepAlive(s)
				runtime.KeepAlive(records)
			}
			b.ReportMetric(perEntity, "B/entity")
		})
	}
}

// BenchmarkEntityStateHeapByCount stores contacts (two indexed ids each) in the memory store and
// in the disk store (Pebble, with its bounded cache) and reports the heap each holds afterwards,
// at the counts ERPSTREAM_BENCH_ENTITIES lists (default 1,000,000; make bench adds 10,000,000 for
// the disk store): the memory store grows with the entities, the disk store stays flat.
func BenchmarkEntityStateHeapByCount(b *testing.B) {
	counts, stores := benchCountsAndStores(b, "ERPSTREAM_BENCH_ENTITIES")
	for _, kind := range stores {
		for _, n := range counts {
			b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
				for range b.N {
					var committed committedStates = newMemStates()
					if kind == "disk" {
						p, err := openPebbleStates(b.TempDir(), "bench")
						if err != nil {
							b.Fatal(err)
						}
						committed = p
					}
					runtime.GC()
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					batch := make([]stateChange, 0, 5000)
					for i := range n {
						st := &entityState{Org: "org", Schema: "contact", Version: uint64(1_700_000_000_000_000 + i),
							Keys: attrKeys{{Attr: "customer_number", Key: keyOf("org", "contact", "customer_number", fmt.Sprint("K-", i))},
								{Attr: "email", Key: keyOf("org", "contact", "email", fmt.Sprintf("c%d@example.com", i))}}}
						batch = append(batch, stateChange{id: fmt.Sprintf("%036d", i), st: st})
						if len(batch) == cap(batch) || i == n-1 {
							if err := committed.apply(batch, map[int32]int64{0: int64(i)}, true); err != nil {
								b.Fatal(err)
							}
							batch = batch[:0]
						}
					}
					runtime.GC()
					runtime.ReadMemStats(&after)
					if committed.size() != n {
						b.Fatalf("%d entities stored, want %d", committed.size(), n)
					}
					b.ReportMetric(float64(after.HeapAlloc-min(before.HeapAlloc, after.HeapAlloc))/(1<<20), "heap-MiB")
					b.ReportMetric(float64(after.HeapAlloc-min(before.HeapAlloc, after.HeapAlloc))/float64(n), "B/entity")
					runtime.KeepAlive(committed)
					_ = committed.close()
				}
			})
		}
	}
}

// benchCountsAndStores are the counts the variable lists (default 1,000,000) and the stores
// ERPSTREAM_BENCH_STORES lists (default disk and memory).
func benchCountsAndStores(b *testing.B, countsVar string) (counts []int, stores []string) {
	counts = []int{1_000_000}
	if v := os.Getenv(countsVar); v != "" {
		counts = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatal(err)
			}
			counts = append(counts, n)
		}
	}
	stores = []string{"disk", "memory"}
	if v := os.Getenv("ERPSTREAM_BENCH_STORES"); v != "" {
		stores = strings.Split(v, ",")
	}
	return counts, stores
}

// BenchmarkStateCodec is the time to encode a contact's state (two indexed ids) as its changelog
// record and to decode it as the store does, per state.
func BenchmarkStateCodec(b *testing.B) {
	st := &entityState{Org: "org-1", Schema: "contact", Version: 1_700_000_000_000_123, LastWrite: 0xfedcba9876543210,
		Keys: attrKeys{{Attr: "customer_number", Key: keyOf("org-1", "contact", "customer_number", "K-1")},
			{Attr: "email", Key: keyOf("org-1", "contact", "email", "a@b.c")}}}
	raw, err := st.appendJSON(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.appendJSON(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			var back entityState
			if err := envelope.Decode(raw, &back); err != nil {
				b.Fatal(err)
			}
		}
	})
}
