// Package snapshot keeps extracted layer trees and mounts them as overlay filesystems.
//
// A committed snapshot is one layer in overlay form: the directory holds exactly the
// layer's changes, deletions as whiteouts (character device 0/0) and replaced
// directories marked opaque (xattr trusted.overlay.opaque=y). Snapshots are named by id
// (the layer's DiffID hex), are read-only once committed, and are stacked as overlay
// lower dirs to form a root filesystem.
//
// # Running a step
//
//	a, err := sn.Prepare(ctx, parentIDs, snapshot.WithInitLayer())
//	defer a.Discard(ctx)              // no-op after Commit
//	... run the process in a.Root() ...
//	a.Unmount(ctx)                    // a.UpperDir() now holds the step's changes
//	... diff a.UpperDir() into a layer blob, learn its diffID ...
//	a.Commit(ctx, cache.SnapshotID(diffID))
//
// # Importing a layer
//
//	a, err := sn.Ingest(ctx)          // nothing mounted; Root() == UpperDir()
//	... extract the layer tar into a.UpperDir() in overlay form ...
//	a.Commit(ctx, id)
package snapshot
