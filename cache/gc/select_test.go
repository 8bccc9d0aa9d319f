package gc

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
)

func TestSelect(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	d := func(s string) digest.Digest { return digest.FromString(s) }
	key := func(s string) digest.Digest { return digest.FromString("key " + s) }
	rec := func(name string, age time.Duration, layers ...string) Record {
		r := Record{Key: key(name), LastUsed: now.Add(-age), Size: 1}
		for _, l := range layers {
			r.DiffIDs = append(r.DiffIDs, d(l))
		}
		return r
	}
	// base ← a ← b is one chain, c another on base; the image "app" uses base and a.
	recs := []Record{
		rec("base", 48*time.Hour, "base"),
		rec("a", 30*time.Hour, "base", "a"),
		rec("b", 2*time.Hour, "base", "a", "b"),
		rec("c", 10*time.Minute, "base", "c"),
		rec("empty", 72*time.Hour),
	}
	sizes := map[digest.Digest]int64{d("base"): 1000, d("a"): 100, d("b"): 10, d("c"): 10000}
	image := map[digest.Digest]bool{d("base"): true, d("a"): true}
	st := Store{
		Total:     20000,
		LayerSize: func(x digest.Digest) int64 { return sizes[x] },
		InImage:   func(x digest.Digest) bool { return image[x] },
		Pinned:    func(x digest.Digest) bool { return image[x] },
	}
	for _, tc := range []struct {
		name  string
		p     Policy
		st    Store
		want  []string
		freed int64
	}{
		{name: "default keeps records of image layers", p: Policy{}, st: st, want: []string{"empty", "b", "c"}, freed: 10 + 10000 + 3},
		{name: "all", p: Policy{All: true}, st: st, want: []string{"empty", "base", "a", "b", "c"}, freed: 10 + 10000 + 5},
		{name: "until keeps recent use", p: Policy{All: true, Until: 24 * time.Hour}, st: st, want: []string{"empty", "base", "a"}, freed: 3},
		{name: "until without all", p: Policy{Until: time.Hour}, st: st, want: []string{"empty", "b"}, freed: 12},
		{name: "keep-storage removes least recently used first", p: Policy{KeepStorage: 19995}, st: st, want: []string{"empty", "b"}, freed: 12},
		{name: "keep-storage already met", p: Policy{KeepStorage: 20000}, st: st, want: nil},
		{
			// Without the image, base is freed only once the last record using it goes.
			name: "keep-storage counts shared layers once",
			p:    Policy{All: true, KeepStorage: 20000 - 1102},
			st:   Store{Total: 20000, LayerSize: st.LayerSize},
			want: []string{"empty", "base", "a", "b", "c"}, freed: 11110 + 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, freed := Select(slices.Clone(recs), tc.p, tc.st, now)
			var got []string
			for _, k := range keys {
				for _, r := range recs {
					if r.Key == k {
						got = append(got, nameOf(r, key))
					}
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("selected (-want +got):\n%s", diff)
			}
			if freed != tc.freed {
				t.Errorf("freed %d, want %d", freed, tc.freed)
			}
		})
	}
}

func nameOf(r Record, key func(string) digest.Digest) string {
	for _, n := range []string{"base", "a", "b", "c", "empty"} {
		if key(n) == r.Key {
			return n
		}
	}
	return "?"
}
