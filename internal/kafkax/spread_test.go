package kafkax

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A spread org's events go to every partition no other org is pinned to, by their whole key;
// the processors' copies of them go to the org's partition; other orgs stay where they were.
func TestASpreadOrgsEventsGoEverywhereButOtherOrgsPins(t *testing.T) {
	for _, tc := range []struct {
		name      string
		placement Placement
	}{
		{"no pins", nil},
		{"another org pinned", Placement{"pinned": 3}},
		{"the spread org pinned too", Placement{"pinned": 3, "big": 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topics := NewTopics("erp").WithPlacement(tc.placement).WithSpread(map[string]bool{"big": true})
			events := topics.Partitioner().ForTopic(topics.Events)
			home := int(topics.OrgPartition([]byte("big"), 12))
			parts := map[int]int{}
			for i := range 1200 {
				parts[events.Partition(&kgo.Record{Key: []byte(fmt.Sprintf("big/int/dedup/doc-%d", i))}, 12)]++
			}
			want := 12
			if tc.placement["pinned"] != 0 {
				want-- // not in the other org's pinned partition
			}
			if len(parts) != want || parts[3] != 0 && tc.placement["pinned"] == 3 || parts[home] == 0 {
				t.Fatalf("1,200 events of the spread org in partitions %v, want %d partitions, the org's own %d among them", parts, want, home)
			}
			for p, n := range parts {
				if n < 50 {
					t.Errorf("partition %d has %d of 1,200 events", p, n)
				}
			}
			cp := &kgo.Record{Key: []byte("big/int/dedup/doc-1"), Headers: []kgo.RecordHeader{{Key: HeaderCopyOf, Value: []byte("7/12")}}}
			if got := events.Partition(cp, 12); got != home {
				t.Fatalf("a processor's copy went to partition %d, want the org's %d", got, home)
			}
			other := &kgo.Record{Key: []byte("small/int/uc/e1")}
			if got, was := events.Partition(other, 12), int(NewTopics("erp").WithPlacement(tc.placement).OrgPartition([]byte("small"), 12)); got != was {
				t.Fatalf("another org moved from %d to %d", was, got)
			}
		})
	}
}

func TestSpreadIsParsed(t *testing.T) {
	got, err := ParseOrgs(" big , other,, ")
	if err != nil || len(got) != 2 || !got["big"] || !got["other"] {
		t.Fatalf("parsed %v, %v", got, err)
	}
	if got, err := ParseOrgs(""); err != nil || got != nil {
		t.Fatalf("empty parsed as %v, %v", got, err)
	}
	for _, bad := range []string{"a/b", "big=3"} {
		if _, err := ParseOrgs(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
