package processor

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

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
					s.applyLocked(fmt.Sprintf("%036d", i), &st)
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
