// Package gc decides what garbage collection of a store removes and keeps it from
// racing with builds.
//
// Every process that opens a store holds a shared lock on the root's
// gc.lock for its whole run; prune takes it exclusively, so it never sees a store
// in which a running build has looked up a record, or committed a layer, that no
// record names yet. A killed process's lock goes with it, so there are no stale leases
// to clean. Select chooses the build-cache records to remove (age, image use, least
// recently used first down to a size limit); PruneCacheMounts removes unused RUN
// --mount=type=cache instances.
package gc
