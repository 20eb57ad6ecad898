package quota

import (
	"context"
	"testing"
	"time"
)

func TestTakeRefillsByTheMinuteAndLetsALargeRequestThroughWhenFull(t *testing.T) {
	b := New(Limits{EventsPerMinute: 60, BytesPerMinute: -1, InFlightBytes: -1})
	now := time.Unix(0, 0)
	b.now = func() time.Time { return now }
	if w := b.Take("a", 60, 0); w != 0 {
		t.Fatalf("a full bucket refused 60: %v", w)
	}
	if w := b.Take("a", 1, 0); w < 900*time.Millisecond || w > 1100*time.Millisecond {
		t.Fatalf("an empty bucket of 1/s: wait %v, want about 1 s", w)
	}
	if w := b.Take("b", 1, 0); w != 0 {
		t.Fatalf("another org waits for a's budget: %v", w)
	}
	now = now.Add(time.Minute)
	if w := b.Take("a", 500, 0); w != 0 { // over capacity, bucket full: goes through alone
		t.Fatalf("a request larger than the bucket, bucket full: wait %v", w)
	}
}

func TestHoldBoundsBytesInFlightPerOrg(t *testing.T) {
	b := New(Limits{InFlightBytes: 100})
	ctx := context.Background()
	release, err := b.Hold(ctx, "a", 80)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := b.Hold(short, "a", 30); err == nil {
		t.Fatal("a second hold over the budget did not wait")
	}
	if r, err := b.Hold(ctx, "b", 100); err != nil {
		t.Fatalf("another org is held by a's bytes: %v", err)
	} else {
		r()
	}
	got := make(chan error, 1)
	go func() {
		r, err := b.Hold(ctx, "a", 30)
		if err == nil {
			r()
		}
		got <- err
	}()
	release()
	release() // twice is once
	if err := <-got; err != nil {
		t.Fatalf("after the release: %v", err)
	}
}

func TestConcurrencyIsPerOrg(t *testing.T) {
	c := NewConcurrency(2)
	r1, ok1 := c.Acquire("a")
	_, ok2 := c.Acquire("a")
	_, ok3 := c.Acquire("a")
	_, okB := c.Acquire("b")
	if !ok1 || !ok2 || ok3 || !okB {
		t.Fatalf("acquire: %v %v %v %v, want the third of org a refused and org b served", ok1, ok2, ok3, okB)
	}
	r1()
	r1() // releasing twice gives back one slot
	if _, ok := c.Acquire("a"); !ok {
		t.Error("released slot not reusable")
	}
	if _, ok := c.Acquire("a"); ok {
		t.Error("double release freed two slots")
	}
}

// An org held back (the processors say its mapping takes more than its share while others wait)
// gets no budget until the hold ends or is released; other orgs are not affected.
func TestAnOrgHeldBackTakesNothingUntilReleased(t *testing.T) {
	b := New(Limits{})
	now := time.Unix(0, 0)
	b.now = func() time.Time { return now }
	b.HoldBack("big", now.Add(15*time.Second))
	if held := b.HeldBack("big"); held != 15*time.Second {
		t.Fatalf("held back %v, want 15 s", held)
	}
	if w := b.Take("big", 1, 10); w != 15*time.Second {
		t.Fatalf("a held org took its budget: wait %v, want 15 s", w)
	}
	if w := b.Take("small", 1, 10); w != 0 || b.HeldBack("small") != 0 {
		t.Fatalf("another org waits: %v", w)
	}
	now = now.Add(16 * time.Second)
	if w := b.Take("big", 1, 10); w != 0 || b.HeldBack("big") != 0 {
		t.Fatalf("after the hold: wait %v", w)
	}
	b.HoldBack("big", now.Add(time.Hour))
	b.HoldBack("big", time.Time{})
	if w := b.Take("big", 1, 10); w != 0 {
		t.Fatalf("released: wait %v", w)
	}
}
