// Package exporter turns build results into images. Image builds a lazy
// go-containerregistry v1.Image whose layers are blobs already in the content store, so
// nothing is recompressed or copied until a sink asks for bytes; Stored reopens an
// image whose manifest is in the store, byte for byte.
//
// The sinks live in subpackages, one each, each with a typed Config: dockertar
// (docker save format), ocilayout (OCI image layout, directory or tar) and imagestore
// (builder's local image names). Registry push goes through internal/registry.
// File sinks write to a temporary name beside the destination and rename it into
// place last, so a failed export leaves nothing at the destination.
package exporter
