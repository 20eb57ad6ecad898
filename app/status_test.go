package app

import (
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/erpstream/erpstream/internal/kafkax"
)

func TestStatusNamesPartitionsAndTheLaggingOnes(t *testing.T) {
	if got, want := assignedPartitions("erp.events", []int32{7, 0, 3}), "erp.events×3 [0 3 7]"; got != want {
		t.Errorf("assigned: %q, want %q", got, want)
	}
	for _, c := range []struct {
		lags map[int32]int64
		want string
	}{
		{map[int32]int64{5: 40}, "40 (partition 5)"},
		{map[int32]int64{1: 10, 3: 12000, 2: 10}, "12020 (partition 3: 12000, partition 1: 10, partition 2: 10)"},
		{map[int32]int64{0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6}, "21 (partition 5: 6, partition 4: 5, partition 3: 4, partition 2: 3, 2 more)"},
	} {
		if got := partitionLags(c.lags); got != c.want {
			t.Errorf("lags %v: %q, want %q", c.lags, got, c.want)
		}
	}
}

func TestStatusSaysWhichOrgsArePinnedSpreadOrMappedAhead(t *testing.T) {
	topics := kafkax.NewTopics("erp").WithPlacement(kafkax.Placement{"big": 12}).WithSpread(map[string]bool{"big": true})
	var out strings.Builder
	orgPlacement(&out, []string{"big", "small", "ahead"}, topics, map[string]bool{"ahead": true}, 13, kadm.DescribedGroupLag{})
	ahead := topics.OrgPartition([]byte("ahead"), 13)
	small := topics.OrgPartition([]byte("small"), 13)
	want := "org big: erp.events partition 12 of 13 (pinned) (spread: its events are mapped in every partition and applied in this one), " +
		"mapped by no member (the processors are down or rebalancing), lag unknown\n" +
		fmt.Sprintf("org small: erp.events partition %d of 13, mapped by no member (the processors are down or rebalancing), lag unknown\n", small) +
		fmt.Sprintf("org ahead: erp.events partition %d of 13 (mapped ahead: the other processor instances map its events, this partition's holder applies them in order), "+
			"mapped by no member (the processors are down or rebalancing), lag unknown\n", ahead)
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	if small == 12 {
		t.Fatal("an org that is not pinned is on the pinned partition")
	}
}

func TestStatusWarnsOfAPartitionChangeHalfDone(t *testing.T) {
	topics := kafkax.NewTopics("erp")
	if got := coPartitioningWarnings(topics, map[string]int{"erp.events": 12, "erp.entity-state": 12, "erp.dedup": 12}); len(got) != 0 {
		t.Fatalf("equal counts warned: %q", got)
	}
	got := coPartitioningWarnings(topics, map[string]int{"erp.events": 14, "erp.entity-state": 12, "erp.dedup": 14})
	if len(got) != 1 || !strings.HasPrefix(got[0], "erp.entity-state has 12 partitions, erp.events 14: they must be equal.") ||
		!strings.Contains(got[0], "erpstream admin partitions 14") {
		t.Fatalf("warnings %q, want one naming erp.entity-state", got)
	}
}
