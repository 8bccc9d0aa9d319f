package imagestore_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/exportertest"
	"github.com/builderdev/builder/exporter/imagestore"
)

// twoImages stores two images in s that share their base layer: a (layers base, a)
// and b (layers base, b).
func twoImages(t *testing.T, s *imagestore.Store, cs *content.Store) (a, b v1.Image, base, la, lb cache.Layer) {
	t.Helper()
	base = exportertest.Layer(t, cs, map[string]string{"base": "base"})
	la = exportertest.Layer(t, cs, map[string]string{"a": "a"})
	lb = exportertest.Layer(t, cs, map[string]string{"b": "b"})
	var err error
	if a, err = exporter.Image(t.Context(), cs, []cache.Layer{base, la}, exportertest.Config(t, 2)); err != nil {
		t.Fatal(err)
	}
	if b, err = exporter.Image(t.Context(), cs, []cache.Layer{base, lb}, exportertest.Config(t, 2)); err != nil {
		t.Fatal(err)
	}
	return a, b, base, la, lb
}

func configDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func names(t *testing.T, s *imagestore.Store) []string {
	t.Helper()
	recs, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		n := r.Name
		if n == "" {
			n = "<none>@" + imagestore.ShortID(r.ConfigDigest)
		}
		out = append(out, n)
	}
	return out
}

func TestFind(t *testing.T) {
	s, cs := open(t, t.TempDir())
	a, b, _, _, _ := twoImages(t, s, cs)
	for _, put := range []struct {
		name string
		img  v1.Image
	}{{"app:v1", a}, {"app:v2", a}, {"other", b}} {
		if _, err := s.Put(t.Context(), put.name, put.img); err != nil {
			t.Fatal(err)
		}
	}
	idA, idB := configDigest(t, a), configDigest(t, b)
	// A prefix long enough to tell the two ids apart.
	n := 1
	for idA.Hex[:n] == idB.Hex[:n] {
		n++
	}
	for _, tc := range []struct {
		ref      string
		wantName string
		wantID   v1.Hash
		wantErr  error
	}{
		{ref: "app:v1", wantName: "docker.io/library/app:v1", wantID: idA},
		{ref: "docker.io/library/other:latest", wantName: "docker.io/library/other:latest", wantID: idB},
		{ref: idA.Hex, wantID: idA},
		{ref: "sha256:" + idB.Hex, wantID: idB},
		{ref: idA.Hex[:n], wantID: idA},
		{ref: imagestore.ShortID(idB), wantID: idB},
		{ref: "app", wantErr: imagestore.ErrNotFound},
		{ref: "nothing:here", wantErr: imagestore.ErrNotFound},
		{ref: "", wantErr: imagestore.ErrNotFound},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			m, err := s.Find(t.Context(), tc.ref)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Find(%q) = %v, want %v", tc.ref, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Name != tc.wantName || m.ID() != tc.wantID {
				t.Errorf("Find(%q) = name %q id %s, want %q %s", tc.ref, m.Name, m.ID(), tc.wantName, tc.wantID)
			}
		})
	}
	m, err := s.Find(t.Context(), "app:v2")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"docker.io/library/app:v1", "docker.io/library/app:v2"}, m.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
}

func TestFindAmbiguous(t *testing.T) {
	s, cs := open(t, t.TempDir())
	// 17 distinct images: two of them share a first hex digit.
	seen := map[byte]bool{}
	for i := range 17 {
		l := exportertest.Layer(t, cs, map[string]string{"f": string(rune('a' + i))})
		img, err := exporter.Image(t.Context(), cs, []cache.Layer{l}, exportertest.Config(t, 1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(t.Context(), "img"+string(rune('a'+i)), img); err != nil {
			t.Fatal(err)
		}
		id := configDigest(t, img)
		if seen[id.Hex[0]] {
			if _, err := s.Find(t.Context(), id.Hex[:1]); !errors.Is(err, imagestore.ErrAmbiguous) {
				t.Errorf("Find(%q) = %v, want ErrAmbiguous", id.Hex[:1], err)
			}
			return
		}
		seen[id.Hex[0]] = true
	}
	t.Fatal("no two ids share a first digit among 17")
}

func TestTag(t *testing.T) {
	s, cs := open(t, t.TempDir())
	a, b, _, _, _ := twoImages(t, s, cs)
	if _, err := s.Put(t.Context(), "", a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), "b", b); err != nil {
		t.Fatal(err)
	}
	idA := imagestore.ShortID(configDigest(t, a))
	idB := imagestore.ShortID(configDigest(t, b))
	if diff := cmp.Diff([]string{"docker.io/library/b:latest", "<none>@" + idA}, names(t, s)); diff != "" {
		t.Fatalf("after Put (-want +got):\n%s", diff)
	}
	m, err := s.Find(t.Context(), idA)
	if err != nil {
		t.Fatal(err)
	}
	// Tagging an untagged image replaces its untagged record.
	if err := s.Tag(t.Context(), m.Record, "reg.example:5000/a:v1"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"docker.io/library/b:latest", "reg.example:5000/a:v1"}, names(t, s)); diff != "" {
		t.Errorf("after Tag (-want +got):\n%s", diff)
	}
	// Moving b's only name to a leaves b untagged.
	if err := s.Tag(t.Context(), m.Record, "b"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"docker.io/library/b:latest", "reg.example:5000/a:v1", "<none>@" + idB}, names(t, s)); diff != "" {
		t.Errorf("after moving b (-want +got):\n%s", diff)
	}
	got, err := s.Get(t.Context(), "b")
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, got) != digestOf(t, a) {
		t.Error("b does not name image a after Tag")
	}
	if err := s.Tag(t.Context(), m.Record, "x@sha256:"+digest.FromString("x").Encoded()); err == nil {
		t.Error("Tag with a digest succeeded")
	}
	// Putting an image that already has a name untagged adds nothing.
	if _, err := s.Put(t.Context(), "", a); err != nil {
		t.Fatal(err)
	}
	if n := len(names(t, s)); n != 3 {
		t.Errorf("untagged Put of a named image: %d records, want 3", n)
	}
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name         string
		tags         []string // of image a; b is always "b"
		ref          string   // "ID" is a's id
		force        bool
		wantUntagged []string
		wantDeleted  bool
		wantErr      error
		wantLeft     []string
	}{
		{
			name: "last tag deletes", tags: []string{"a"}, ref: "a",
			wantUntagged: []string{"docker.io/library/a:latest"}, wantDeleted: true,
			wantLeft: []string{"docker.io/library/b:latest"},
		},
		{
			name: "one of several tags untags", tags: []string{"a:1", "a:2"}, ref: "a:1",
			wantUntagged: []string{"docker.io/library/a:1"},
			wantLeft:     []string{"docker.io/library/a:2", "docker.io/library/b:latest"},
		},
		{
			name: "id with tags in one repository deletes", tags: []string{"a:1", "a:2"}, ref: "ID",
			wantUntagged: []string{"docker.io/library/a:1", "docker.io/library/a:2"}, wantDeleted: true,
			wantLeft: []string{"docker.io/library/b:latest"},
		},
		{
			name: "id with tags in several repositories refuses", tags: []string{"a", "c"}, ref: "ID",
			wantErr:  imagestore.ErrConflict,
			wantLeft: []string{"docker.io/library/a:latest", "docker.io/library/b:latest", "docker.io/library/c:latest"},
		},
		{
			name: "id with tags in several repositories forced", tags: []string{"a", "c"}, ref: "ID", force: true,
			wantUntagged: []string{"docker.io/library/a:latest", "docker.io/library/c:latest"}, wantDeleted: true,
			wantLeft: []string{"docker.io/library/b:latest"},
		},
		{
			name: "untagged by id", ref: "ID", wantDeleted: true,
			wantLeft: []string{"docker.io/library/b:latest"},
		},
		{
			name: "unknown", tags: []string{"a"}, ref: "zzz", wantErr: imagestore.ErrNotFound,
			wantLeft: []string{"docker.io/library/a:latest", "docker.io/library/b:latest"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, cs := open(t, t.TempDir())
			a, b, _, _, _ := twoImages(t, s, cs)
			if len(tc.tags) == 0 {
				if _, err := s.Put(t.Context(), "", a); err != nil {
					t.Fatal(err)
				}
			}
			for _, tag := range tc.tags {
				if _, err := s.Put(t.Context(), tag, a); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Put(t.Context(), "b", b); err != nil {
				t.Fatal(err)
			}
			ref := tc.ref
			if ref == "ID" {
				ref = imagestore.ShortID(configDigest(t, a))
			}
			got, err := s.Remove(t.Context(), ref, tc.force)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Remove = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantUntagged, got.Untagged); diff != "" {
				t.Errorf("Untagged (-want +got):\n%s", diff)
			}
			if deleted := got.Deleted != (v1.Hash{}); deleted != tc.wantDeleted {
				t.Errorf("Deleted = %v, want deleted %v", got.Deleted, tc.wantDeleted)
			}
			if tc.wantDeleted && got.Deleted != configDigest(t, a) {
				t.Errorf("Deleted = %s, want a's id", got.Deleted)
			}
			if diff := cmp.Diff(tc.wantLeft, names(t, s)); diff != "" {
				t.Errorf("left (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnreferenced(t *testing.T) {
	s, cs := open(t, t.TempDir())
	a, b, base, la, lb := twoImages(t, s, cs)
	for _, p := range []struct {
		n   string
		img v1.Image
	}{{"a", a}, {"a:2", a}, {"b", b}} {
		if _, err := s.Put(t.Context(), p.n, p.img); err != nil {
			t.Fatal(err)
		}
	}
	manifestOf := func(img v1.Image) digest.Digest { return digest.Digest(digestOf(t, img).String()) }
	cfgOf := func(img v1.Image) digest.Digest { return digest.Digest(configDigest(t, img).String()) }

	// Untagging one of a's names frees nothing: a:2 keeps it.
	rm, err := s.Remove(t.Context(), "a", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Records) != 0 {
		t.Fatalf("untag returned records %v", rm.Records)
	}
	// Deleting a frees its own layer, manifest and config, not the shared base.
	if rm, err = s.Remove(t.Context(), "a:2", false); err != nil {
		t.Fatal(err)
	}
	g, err := s.Unreferenced(t.Context(), rm.Records)
	if err != nil {
		t.Fatal(err)
	}
	want := imagestore.Garbage{Blobs: sorted(manifestOf(a), cfgOf(a), la.Digest), DiffIDs: sorted(la.DiffID)}
	if cfgOf(a) == cfgOf(b) {
		// Same config bytes (exportertest.Config) but different diff ids: never equal.
		t.Fatal("a and b share a config")
	}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("garbage of a (-want +got):\n%s", diff)
	}
	// Deleting b too: now the base goes as well.
	if rm, err = s.Remove(t.Context(), "b", false); err != nil {
		t.Fatal(err)
	}
	if g, err = s.Unreferenced(t.Context(), rm.Records); err != nil {
		t.Fatal(err)
	}
	want = imagestore.Garbage{Blobs: sorted(manifestOf(b), cfgOf(b), base.Digest, lb.Digest), DiffIDs: sorted(base.DiffID, lb.DiffID)}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("garbage of b (-want +got):\n%s", diff)
	}
}

func sorted(ds ...digest.Digest) []digest.Digest {
	slices.Sort(ds)
	return ds
}
