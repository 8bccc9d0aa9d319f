package fscopy

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// fileStatCacheVersion changes when the encoding or the meaning of StatKey does.
const fileStatCacheVersion = 1

// FileStatCache is a StatCache that outlives the process: Open loads it from a file,
// Save writes it back. A no-op rebuild of a large context then costs one stat per file
// instead of reading every byte. Like MemStatCache it is local to this machine (keys
// hold inode numbers and ctimes) and never reaches a cache key.
type FileStatCache struct {
	path string
	max  int

	mu    sync.Mutex
	old   map[StatKey]digest.Digest // loaded, not used yet by this process
	used  map[StatKey]digest.Digest // looked up or added by this process
	dirty bool                      // a Put happened: the file lacks something
}

type statCacheFile struct {
	Version int
	Entries []statCacheEntry
}

type statCacheEntry struct {
	Key    StatKey
	Digest digest.Digest
}

// OpenFileStatCache loads the cache at path. A missing, unreadable or outdated file is
// an empty cache, not an error: it only costs reading files again. Save keeps at most
// max entries, those this process used first.
func OpenFileStatCache(path string, max int) *FileStatCache {
	c := &FileStatCache{path: path, max: max, old: map[StatKey]digest.Digest{}, used: map[StatKey]digest.Digest{}}
	f, err := os.Open(path)
	if err != nil {
		return c
	}
	defer f.Close()
	var file statCacheFile
	if gob.NewDecoder(bufio.NewReader(f)).Decode(&file) != nil || file.Version != fileStatCacheVersion {
		return c
	}
	for _, e := range file.Entries {
		if e.Digest.Validate() == nil {
			c.old[e.Key] = e.Digest
		}
	}
	return c
}

// Get implements StatCache.
func (c *FileStatCache) Get(k StatKey) (digest.Digest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.used[k]; ok {
		return d, true
	}
	d, ok := c.old[k]
	if ok {
		c.used[k] = d
		delete(c.old, k)
	}
	return d, ok
}

// Put implements StatCache.
func (c *FileStatCache) Put(k StatKey, d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used[k] = d
	delete(c.old, k)
	c.dirty = true
}

// Len is the number of entries Save would consider.
func (c *FileStatCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.used) + len(c.old)
}

// Save writes the cache to its file when Put added something (temp file and rename, so concurrent builds on
// one root each leave a whole file; the last one wins). Entries this process used come
// first; older ones fill up to the limit, so files of contexts not built lately age out.
func (c *FileStatCache) Save() error {
	c.mu.Lock()
	if !c.dirty {
		// Nothing new: the file already holds every entry (a no-op rebuild writes nothing).
		c.mu.Unlock()
		return nil
	}
	c.dirty = false
	file := statCacheFile{Version: fileStatCacheVersion, Entries: make([]statCacheEntry, 0, min(c.max, len(c.used)+len(c.old)))}
	for k, d := range c.used {
		if len(file.Entries) == c.max {
			break
		}
		file.Entries = append(file.Entries, statCacheEntry{k, d})
	}
	for k, d := range c.old {
		if len(file.Entries) == c.max {
			break
		}
		file.Entries = append(file.Entries, statCacheEntry{k, d})
	}
	c.mu.Unlock()

	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("saving stat cache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), "."+filepath.Base(c.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("saving stat cache: %w", err)
	}
	w := bufio.NewWriter(tmp)
	err = gob.NewEncoder(w).Encode(&file)
	if err == nil {
		err = w.Flush()
	}
	// No fsync: a torn file after a crash is just an empty cache on the next load.
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), c.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("saving stat cache: %w", err)
	}
	return nil
}
