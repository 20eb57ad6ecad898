package processor

// idSet is the set of entity ids under one lookup key: a small slice, or a map past 16 ids.

// idSet holds the entities of one lookup key: a few in a slice (most keys are one entity's
// unique id), many in a map, so that low-cardinality attributes (a query scope's supplier or
// market) do not make every add and remove a scan.
type idSet struct {
	few  []string
	many map[string]struct{}
}

const idSetSliceMax = 16

func (s idSet) len() int { return len(s.few) + len(s.many) }

func (s idSet) each(fn func(id string)) {
	s.eachWhile(func(id string) bool { fn(id); return true })
}

// eachWhile calls fn for the ids until it returns false.
func (s idSet) eachWhile(fn func(id string) bool) {
	for _, id := range s.few {
		if !fn(id) {
			return
		}
	}
	for id := range s.many {
		if !fn(id) {
			return
		}
	}
}

func (s idSet) add(id string) idSet {
	if s.many != nil {
		s.many[id] = struct{}{}
		return s
	}
	for _, x := range s.few {
		if x == id {
			return s
		}
	}
	if len(s.few) < idSetSliceMax {
		s.few = append(s.few, id)
		return s
	}
	s.many = make(map[string]struct{}, 2*idSetSliceMax)
	for _, x := range s.few {
		s.many[x] = struct{}{}
	}
	s.many[id], s.few = struct{}{}, nil
	return s
}

func (s idSet) remove(id string) idSet {
	if s.many != nil {
		delete(s.many, id)
		return s
	}
	for i, x := range s.few {
		if x == id {
			s.few = append(s.few[:i:i], s.few[i+1:]...)
			break
		}
	}
	return s
}
