package processor

import (
	"fmt"
	"sort"
	"testing"
)

func TestIDSetAcrossItsSliceAndMapForms(t *testing.T) {
	var s idSet
	for i := 0; i < 3*idSetSliceMax; i++ {
		s = s.add(fmt.Sprint("e", i))
		s = s.add(fmt.Sprint("e", i)) // twice: still once
	}
	if s.len() != 3*idSetSliceMax || s.many == nil {
		t.Fatalf("len %d (map form %v), want %d in the map form", s.len(), s.many != nil, 3*idSetSliceMax)
	}
	for i := 0; i < 3*idSetSliceMax; i += 2 {
		s = s.remove(fmt.Sprint("e", i))
	}
	var ids []string
	s.each(func(id string) { ids = append(ids, id) })
	sort.Strings(ids)
	if len(ids) != 3*idSetSliceMax/2 || ids[0] != "e1" {
		t.Errorf("after removing the even ones: %v", ids)
	}
	var small idSet
	small = small.add("a").add("b").remove("a")
	if small.len() != 1 || small.few[0] != "b" {
		t.Errorf("small set %+v", small)
	}
}
