// Package exporter turns build results into images. Image builds a lazy
// go-containerregistry v1.Image whose layers are blobs already in the content store, so
// nothing is recompressed or copied until a sink asks for bytes; Stored reopens an
// image whose manifest is in the store, byte for byte. Image makes OCI manifests, or
// Docker schema 2 ones with WithDockerMediaTypes. Index puts the images of a
// multi-platform build into one OCI image index (or Docker manifest list), each
// descriptor carrying its platform.
//
// Layers are committed once as gzip (worker/diff). An output that wants zstd or
// uncompressed blobs, or forces recompression, gets them from a Converter, which
// converts each layer once and records the result beside the content store, so later
// exports and pushes reuse the blob.
//
// The sinks live in subpackages, one each, each with a typed Config: dockertar
// (docker save format), ocilayout (OCI image layout, directory or tar), imagestore
// (builder's local image names) and rootfs (the final filesystem as a directory or a
// tar). Registry push goes through internal/registry. File sinks write to a temporary
// name beside the destination and rename it into place last, so a failed export leaves
// nothing at the destination; the tar sinks can also stream to a pipe (dest=-).
package exporter
