// Package fscopy carries out the Dockerfile's COPY, ADD of local archives, mkdir and
// inline files (heredocs) on real directories, and computes the content checksums that
// make their cache keys. Copy and Checksum share one walk (select_linux.go), so
// .dockerignore patterns, --exclude and --parents select the same entries in both.
//
// Both roots are plain host directories: the source is the build context or a read-only
// view of another stage, the destination the mounted upper/overlay of the step being
// built. Every path that comes from the Dockerfile is resolved inside its root with
// github.com/cyphar/filepath-securejoin, so a symlink "etc -> /etc" inside an image means
// that image's etc, never the host's. Symlink races are out of scope: nothing else writes
// into these trees while a step runs.
//
// The semantics follow Docker's Dockerfile reference, and BuildKit's file backend where
// the reference is vague (see Copy). Checksum hashes exactly what Copy reads and nothing
// host-specific (no mtimes, inode numbers or root paths), so equal content gives equal
// keys on every machine.
//
// This package mirrors llb's CopyAction and MkdirAction with its own small structs:
// worker packages import only cache/..., never llb.
package fscopy
