// Package lru is a bounded least-recently-used map, safe for concurrent use: the processor's
// decoded entity states and the projector's stored entity rows are kept in one.
package lru

import (
	"container/list"
	"sync"
)

// Cache holds at most its limit of entries, dropping the least recently used first. A limit of
// zero or less keeps nothing.
type Cache[K comparable, V any] struct {
	mu    sync.Mutex
	limit int
	order *list.List // front: most recently used; values are *entry[K, V]
	byKey map[K]*list.Element
}

type entry[K comparable, V any] struct {
	key   K
	value V
}

// New returns a cache of at most limit entries.
func New[K comparable, V any](limit int) *Cache[K, V] {
	return &Cache[K, V]{limit: limit, order: list.New(), byKey: map[K]*list.Element{}}
}

// Get returns the key's value and marks it used.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*entry[K, V]).value, true
}

// Put sets the key's value, dropping the least recently used entries past the limit.
func (c *Cache[K, V]) Put(key K, value V) {
	if c.limit <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		el.Value.(*entry[K, V]).value = value
		c.order.MoveToFront(el)
		return
	}
	c.byKey[key] = c.order.PushFront(&entry[K, V]{key: key, value: value})
	for c.order.Len() > c.limit {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.byKey, oldest.Value.(*entry[K, V]).key)
	}
}

// Refresh sets the value of a key the cache holds, without marking it used, and reports whether
// it held it: a writer that must not push out what readers use keeps what they hold current.
func (c *Cache[K, V]) Refresh(key K, value V) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if ok {
		el.Value.(*entry[K, V]).value = value
	}
	return ok
}

// Clear drops every entry.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order.Init()
	clear(c.byKey)
}

// Len is the number of entries.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
