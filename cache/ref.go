package cache

import (
	digest "github.com/opencontainers/go-digest"
)

// Layer is one filesystem change set: a compressed tar blob in the content store and,
// for layers that are materialised, an extracted snapshot named by its DiffID.
type Layer struct {
	// DiffID is the digest of the uncompressed tar; it also names the snapshot directory.
	DiffID digest.Digest `json:"diffID"`
	// Digest, Size and MediaType describe the compressed blob in the content store.
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType"`
}

// Ref is the result of a vertex: a root filesystem as a chain of layers, base first.
// A Ref with no layers is the empty filesystem. LocalDir is set instead for local
// sources (the build context), which are read in place and never stored in the index.
type Ref struct {
	Layers   []Layer `json:"layers"`
	LocalDir string  `json:"localDir,omitempty"`
	// LocalIgnore are the .dockerignore patterns of LocalDir: matching paths are not
	// part of the source.
	LocalIgnore []string `json:"localIgnore,omitempty"`
}

// SnapshotIDs returns the snapshot ids to stack for the chain, base first. A layer that
// occurs more than once (COPY of the same file twice gives identical diffs) is listed
// only at its topmost place: overlayfs refuses one lower dir twice, and dropping the
// lower occurrence changes nothing, since the upper one sets every path the layer has.
func (r Ref) SnapshotIDs() []string {
	top := make(map[digest.Digest]int, len(r.Layers))
	for i, l := range r.Layers {
		top[l.DiffID] = i
	}
	ids := make([]string, 0, len(top))
	for i, l := range r.Layers {
		if top[l.DiffID] == i {
			ids = append(ids, SnapshotID(l.DiffID))
		}
	}
	return ids
}

// SnapshotID names the snapshot directory of a layer.
func SnapshotID(diffID digest.Digest) string { return diffID.Encoded() }

// WithLayer returns a new Ref with l appended to r's chain.
func (r Ref) WithLayer(l Layer) Ref {
	out := Ref{Layers: make([]Layer, 0, len(r.Layers)+1)}
	out.Layers = append(out.Layers, r.Layers...)
	out.Layers = append(out.Layers, l)
	return out
}
