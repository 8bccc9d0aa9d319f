// Package remotecache exports build cache records (cache key → layer chain) to a
// registry, an OCI layout directory or an image's own config, and imports them back
// so another machine's build can reuse them. The format is documented in
// docs/cache-format.md.
//
// Import is lazy: only the cache manifest and its config (the record list) are read.
// An imported hit names layers that stay remote until an op reads the filesystem or an
// exporter needs the bytes; the Importer is then the BlobFetcher that gets them.
package remotecache
