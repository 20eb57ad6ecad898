package processor

import "testing"

// The cache gives an extraction once, to the event it was made for, and none for events the
// instance mapped already; a partition holds a bounded number.
func TestTheAheadCacheGivesAnExtractionOnceToItsEvent(t *testing.T) {
	c := newAheadCache(3)
	c.put(1, 10, "e10", []byte("x10"))
	c.put(1, 11, "e11", []byte("x11"))
	if got := c.take(1, 10, "e10"); string(got) != "x10" {
		t.Fatalf("take 10: %q", got)
	}
	if got := c.take(1, 10, "e10"); got != nil {
		t.Fatalf("taken twice: %q", got)
	}
	if got := c.take(1, 11, "other"); got != nil {
		t.Fatalf("an extraction of another event (a topic made again) was given: %q", got)
	}
	c.put(1, 9, "e9", []byte("x9")) // below what is mapped
	if got := c.take(1, 9, "e9"); got != nil {
		t.Fatalf("an extraction for an event mapped already was kept: %q", got)
	}
	for off := int64(20); off < 30; off++ {
		c.put(1, off, "e", []byte("x"))
	}
	if n := len(c.parts[1].byOffset); n != 3 {
		t.Fatalf("%d extractions held, want the bound 3", n)
	}
	big := make([]byte, aheadMaxBytes/2+1)
	c.put(3, 1, "e1", big)
	c.put(3, 2, "e2", big)
	if c.take(3, 1, "e1") == nil || c.take(3, 2, "e2") != nil {
		t.Fatalf("the second half of the bytes bound was kept beside the first")
	}
	c.put(2, 5, "e5", []byte("x5"))
	c.drop(2)
	if got := c.take(2, 5, "e5"); got != nil {
		t.Fatalf("a dropped partition's extraction was given: %q", got)
	}
}
