package gc

import (
	"cmp"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Record is a build-cache record as garbage collection sees it.
type Record struct {
	Key digest.Digest
	// DiffIDs are the layers of the record's result, base first; the last one is the
	// layer the record's own step made.
	DiffIDs  []digest.Digest
	LastUsed time.Time
	// Size is what removing the record file itself frees.
	Size int64
}

// top is the layer the record's step made, "" for an empty result.
func (r Record) top() digest.Digest {
	if len(r.DiffIDs) == 0 {
		return ""
	}
	return r.DiffIDs[len(r.DiffIDs)-1]
}

// Policy says which records may go.
type Policy struct {
	// All also removes records whose own layer an image in the store uses. Without it
	// they stay: removing them would free no layer, only lose the cache hit.
	All bool
	// Until keeps records used within this long before now; 0 puts no age limit.
	Until time.Duration
	// KeepStorage, when positive, removes least recently used records only until the
	// store's disk use is at most this many bytes.
	KeepStorage int64
}

// Store describes what besides the records holds layers.
type Store struct {
	// Total is the store's disk use in bytes, for KeepStorage.
	Total int64
	// LayerSize is what removing the layer diffID frees: its blobs and snapshot.
	LayerSize func(diffID digest.Digest) int64
	// InImage reports whether an image in the store uses layer diffID.
	InImage func(diffID digest.Digest) bool
	// Pinned reports whether something that Select does not remove (an image, a
	// remembered base image) keeps layer diffID.
	Pinned func(diffID digest.Digest) bool
}

// Select returns the keys of the records to remove, oldest use first, and the bytes
// removing them frees (layers no remaining record or pinned user holds, plus the
// record files).
func Select(recs []Record, p Policy, st Store, now time.Time) (keys []digest.Digest, freed int64) {
	users := map[digest.Digest]int{}
	for _, r := range recs {
		for _, d := range uniq(r.DiffIDs) {
			users[d]++
		}
	}
	var cand []Record
	for _, r := range recs {
		if p.Until > 0 && now.Sub(r.LastUsed) < p.Until {
			continue
		}
		if !p.All && r.top() != "" && st.InImage != nil && st.InImage(r.top()) {
			continue
		}
		cand = append(cand, r)
	}
	slices.SortFunc(cand, func(a, b Record) int {
		if c := a.LastUsed.Compare(b.LastUsed); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	total := st.Total
	for _, r := range cand {
		if p.KeepStorage > 0 && total <= p.KeepStorage {
			break
		}
		n := r.Size
		for _, d := range uniq(r.DiffIDs) {
			users[d]--
			if users[d] == 0 && (st.Pinned == nil || !st.Pinned(d)) && st.LayerSize != nil {
				n += st.LayerSize(d)
			}
		}
		keys = append(keys, r.Key)
		freed += n
		total -= n
	}
	return keys, freed
}

func uniq(ds []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, 0, len(ds))
	for _, d := range ds {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}
