// Package cache holds what builder keeps between builds: results of graph vertices
// (Ref, a chain of layers), and the index from cache key to result. Blobs live in
// cache/content and extracted layer trees in cache/snapshot.
//
// Everything is stored as plain files written to a temporary name and renamed into
// place, so several builder processes can share one root and a process killed at any
// moment leaves nothing that a later build would mistake for a finished result.
package cache
