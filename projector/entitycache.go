package projector

import (
	"container/list"
	"sync"
)

// DefaultEntityCache is how many entities' stored rows a projector keeps by default.
const DefaultEntityCache = 100_000

// entityCache keeps the rows this projector last stored for recently written entities, so that
// patching an update reads ClickHouse (a FINAL query) only for entities it has not written
// lately. It is right because one projector owns all writes of an entity (entity writes are
// keyed by entity id) for as long as it holds the partition: the cache is emptied whenever
// partitions move, and filled only with rows ClickHouse accepted.
type entityCache struct {
	mu    sync.Mutex
	limit int
	order *list.List // front: most recently used; values are *cachedEntity
	byID  map[string]*list.Element
}

type cachedEntity struct {
	id  string
	row StoredEntity
}

func newEntityCache(limit int) *entityCache {
	return &entityCache{limit: limit, order: list.New(), byID: map[string]*list.Element{}}
}

func (c *entityCache) get(id string) (StoredEntity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return StoredEntity{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cachedEntity).row, true
}

// store records rows ClickHouse has accepted.
func (c *entityCache) store(rows map[string]StoredEntity) {
	if c.limit <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, row := range rows {
		if el, ok := c.byID[id]; ok {
			el.Value.(*cachedEntity).row = row
			c.order.MoveToFront(el)
			continue
		}
		c.byID[id] = c.order.PushFront(&cachedEntity{id: id, row: row})
		for c.order.Len() > c.limit {
			oldest := c.order.Back()
			c.order.Remove(oldest)
			delete(c.byID, oldest.Value.(*cachedEntity).id)
		}
	}
}

// clear forgets everything: partitions moved, and another projector may write these entities.
func (c *entityCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order.Init()
	clear(c.byID)
}

func (c *entityCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
