package projector

// DefaultEntityCache is how many entities' stored rows a projector keeps by default.
const DefaultEntityCache = 100_000

// The projector's cache (Projector.cache, an lru.Cache of entity id to StoredEntity) keeps the
// rows it last stored for recently written entities, so that patching an update reads ClickHouse
// (a FINAL query) only for entities it has not written lately. It is right because one projector
// owns all writes of an entity (entity writes are keyed by entity id) for as long as it holds the
// partition: the cache is emptied whenever partitions move, and filled only with rows ClickHouse
// accepted (flush, after the insert).
