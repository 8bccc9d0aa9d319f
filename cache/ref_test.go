package cache

import (
	"slices"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestSnapshotIDsKeepTopmostOccurrence(t *testing.T) {
	t.Parallel()
	l := func(s string) Layer { return Layer{DiffID: digest.FromString(s)} }
	id := func(s string) string { return SnapshotID(digest.FromString(s)) }
	r := Ref{Layers: []Layer{l("base"), l("copy"), l("other"), l("copy"), l("run")}}
	want := []string{id("base"), id("other"), id("copy"), id("run")}
	if got := r.SnapshotIDs(); !slices.Equal(got, want) {
		t.Errorf("SnapshotIDs() = %v, want %v", got, want)
	}
	if len(r.Layers) != 5 {
		t.Error("SnapshotIDs changed the chain")
	}
}
