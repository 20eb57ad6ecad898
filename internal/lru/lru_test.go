package lru

import "testing"

func TestTheLeastRecentlyUsedGoesFirst(t *testing.T) {
	c := New[string, int](2)
	c.Put("a", 1)
	c.Put("b", 2)
	c.Get("a") // a is now the most recently used
	c.Put("c", 3)
	if _, ok := c.Get("b"); ok {
		t.Error("b, the least recently used, is still there")
	}
	for k, v := range map[string]int{"a": 1, "c": 3} {
		if got, ok := c.Get(k); !ok || got != v {
			t.Errorf("%s: %d %v", k, got, ok)
		}
	}
	c.Put("a", 10)
	if got, _ := c.Get("a"); got != 10 || c.Len() != 2 {
		t.Errorf("replaced value %d, %d entries", got, c.Len())
	}
	c.Clear()
	if _, ok := c.Get("a"); ok || c.Len() != 0 {
		t.Error("entries left after Clear")
	}
}

func TestALimitOfZeroKeepsNothing(t *testing.T) {
	c := New[string, int](0)
	c.Put("a", 1)
	if _, ok := c.Get("a"); ok {
		t.Error("kept an entry")
	}
}

func TestRefreshChangesOnlyWhatIsHeldAndKeepsTheOrder(t *testing.T) {
	c := New[string, int](2)
	c.Put("a", 1)
	c.Put("b", 2)
	if !c.Refresh("a", 10) || c.Refresh("z", 26) {
		t.Fatal("Refresh reports the wrong keys as held")
	}
	if _, ok := c.Get("z"); ok {
		t.Fatal("Refresh added a key")
	}
	c.Put("c", 3) // a was refreshed, not used: it is still the oldest and goes
	if _, ok := c.Get("a"); ok {
		t.Error("Refresh marked a used")
	}
	if v, ok := c.Get("b"); !ok || v != 2 {
		t.Errorf("b = %d, %v", v, ok)
	}
}
