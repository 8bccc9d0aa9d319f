// Package llb is builder's low-level build graph: a small set of typed operations
// (source, exec, file) linked into a DAG. Every vertex is named by the sha256 of a
// canonical, versioned JSON encoding of its operation and the digests of its inputs, so
// two identical steps anywhere in a build are one vertex. Source locations and
// descriptions ride beside the op in Meta and never enter the digest.
//
// The package does no I/O and imports nothing else of builder.
package llb
