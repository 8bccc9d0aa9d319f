// Package rootfs writes a build's final filesystem out of the store: into a directory
// (BuildKit's type=local output) or as one tar (type=tar). The source is a mounted,
// read-only view of the result, so overlay whiteouts are already applied; what is
// written is the tree as a container would see it.
//
// Entries go in lexical order. Regular files, directories, symlinks, hard links,
// device nodes and fifos keep their mode and, in a tar or when running as root,
// their owner. With an epoch (SOURCE_DATE_EPOCH) every modification time is the epoch,
// as in BuildKit; otherwise the files keep theirs. Extended attributes are not copied.
package rootfs
