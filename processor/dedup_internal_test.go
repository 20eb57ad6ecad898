package processor

import (
	"fmt"
	"testing"
	"time"
)

func openTestMarks(t *testing.T, dir, topicID string) (*pebbleMarks, func()) {
	t.Helper()
	states, err := openPebbleStates(dir, "states-topic")
	if err != nil {
		t.Fatal(err)
	}
	marks, err := openPebbleMarks(states.db, topicID)
	if err != nil {
		t.Fatal(err)
	}
	return marks, func() {
		if err := states.close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Marks on disk expire once their partition's receipts are a window past them, oldest first and
// a bounded number per batch; a key marked again keeps its new mark; a partition's marks expire
// by its own receipts; checkpoints and marks survive a reopen, and a recreated topic's are
// discarded.
func TestDiskMarksExpireByTheirPartitionsReceipts(t *testing.T) {
	dir := t.TempDir()
	marks, closeStore := openTestMarks(t, dir, "dedup-1")
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	hour := time.Hour.Milliseconds()
	var old []dedupMark
	for i := range 3000 {
		old = append(old, dedupMark{partition: 1, key: fmt.Sprint("org/int/uc/old-", i), atMs: t0})
	}
	old = append(old, dedupMark{partition: 2, key: "org-b/int/uc/other", atMs: t0})
	if err := marks.apply(old, map[int32]int64{1: 3000, 2: 1}); err != nil {
		t.Fatal(err)
	}
	if _, ok := marks.firstSeen(1, "org/int/uc/old-7"); !ok || marks.size() != 3001 {
		t.Fatalf("marks: %d, old-7 found %v", marks.size(), ok)
	}
	// A day and an hour later in partition 1: one mark there, and old-5 marked again.
	later := []dedupMark{{partition: 1, key: "org/int/uc/new", atMs: t0 + 25*hour}, {partition: 1, key: "org/int/uc/old-5", atMs: t0 + 25*hour}}
	if err := marks.apply(later, map[int32]int64{1: 3002}); err != nil {
		t.Fatal(err)
	}
	// The batch expires at most markExpiryBudget + 2 per mark added; the rest follows.
	if got, budget := 3001+len(later)-marks.size(), markExpiryBudget+2*len(later); got > budget || got == 0 {
		t.Fatalf("%d marks expired by one batch, want 1..%d", got, budget)
	}
	for marks.size() > 3 {
		before := marks.size()
		if err := marks.apply(nil, nil); err != nil {
			t.Fatal(err)
		}
		if marks.size() == before {
			t.Fatalf("expiry stopped at %d marks", before)
		}
	}
	if _, ok := marks.firstSeen(1, "org/int/uc/old-7"); ok {
		t.Error("an expired mark is still held")
	}
	if at, ok := marks.firstSeen(1, "org/int/uc/old-5"); !ok || at != t0+25*hour {
		t.Errorf("a key marked again after the window lost its new mark: %d %v", at, ok)
	}
	if _, ok := marks.firstSeen(2, "org-b/int/uc/other"); !ok {
		t.Error("partition 2's mark expired by partition 1's receipts")
	}
	closeStore()

	again, closeAgain := openTestMarks(t, dir, "dedup-1")
	if again.size() != 3 || again.positions()[1] != 3002 || again.positions()[2] != 1 {
		t.Fatalf("after a reopen: %d marks, positions %v", again.size(), again.positions())
	}
	// The reopened store goes on counting.
	if err := again.apply([]dedupMark{{partition: 1, key: "org/int/uc/newer", atMs: t0 + 26*hour}}, nil); err != nil {
		t.Fatal(err)
	}
	if again.size() != 4 {
		t.Fatalf("%d marks after one more, want 4", again.size())
	}
	closeAgain()

	recreated, closeRecreated := openTestMarks(t, dir, "dedup-2")
	defer closeRecreated()
	if _, ok := recreated.firstSeen(1, "org/int/uc/new"); ok || recreated.size() != 0 || len(recreated.positions()) != 0 {
		t.Fatalf("a recreated topic's store kept %d marks, positions %v", recreated.size(), recreated.positions())
	}
}
