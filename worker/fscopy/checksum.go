package fscopy

import (
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// StatKey identifies one version of a file on this machine without reading it. Any
// write changes mtime or ctime (ctime cannot be set from user space), so a hit is safe
// to trust for content. Keys are local: they never reach a cache key.
type StatKey struct {
	Path  string
	Size  int64
	Mtime int64 // unix nanoseconds
	Ctime int64 // unix nanoseconds
	Ino   uint64
	Dev   uint64
}

// StatCache remembers content digests by StatKey so that an unchanged file costs a stat,
// not a read. Implementations must be safe for concurrent use.
type StatCache interface {
	Get(StatKey) (digest.Digest, bool)
	Put(StatKey, digest.Digest)
}

// MemStatCache is an in-memory StatCache for the life of one process.
type MemStatCache struct {
	mu sync.Mutex
	m  map[StatKey]digest.Digest
}

// NewMemStatCache returns an empty MemStatCache.
func NewMemStatCache() *MemStatCache {
	return &MemStatCache{m: map[StatKey]digest.Digest{}}
}

// Get implements StatCache.
func (c *MemStatCache) Get(k StatKey) (digest.Digest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.m[k]
	return d, ok
}

// Put implements StatCache.
func (c *MemStatCache) Put(k StatKey, d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[k] = d
}

// Hasher computes source checksums. The zero value works: no stat cache, one content
// reader per CPU.
type Hasher struct {
	// StatCache, when set, skips reading files whose stat has not changed.
	StatCache StatCache
	// Jobs bounds concurrent file reads; 0 means GOMAXPROCS.
	Jobs int
}
