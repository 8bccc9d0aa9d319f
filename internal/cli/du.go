package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/builderdev/builder/exporter/imagestore"
)

func newDuCmd(g *globalOptions) *cobra.Command {
	var verbose, bytes bool
	cmd := &cobra.Command{
		Use:   "du",
		Short: "Show the disk use of the store",
		Long: `Show the disk space the store under --root uses, as du counts it (allocated
blocks, each file once however many hard links it has), split by area: content blobs
(layers, configs, manifests), extracted layer snapshots, build cache records, RUN
--mount=type=cache directories, image records and the rest. A layer shared by several
images or build steps is stored, and counted, once. SHARED is the part of an area
used by more than one image or cache record.

-v lists every item with its type, size, last use and whether it is shared; for images
SIZE is the disk use of all their blobs and SHARED the part other images or the build
cache also use.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			u, err := st.diskUsage(ctx)
			if err != nil {
				return err
			}
			size := humanSize
			if bytes {
				size = func(n int64) string { return fmt.Sprint(n) }
			}
			return u.write(cmd.OutOrStdout(), verbose, size)
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every item")
	cmd.Flags().BoolVar(&bytes, "bytes", false, "print sizes in bytes")
	return cmd
}

// Areas of the store, in output order.
const (
	areaContent     = "Content blobs"
	areaSnapshots   = "Snapshots"
	areaCache       = "Cache records"
	areaCacheMounts = "Cache mounts"
	areaImages      = "Image records"
	areaOther       = "Other"
)

var areas = []string{areaContent, areaSnapshots, areaCache, areaCacheMounts, areaImages, areaOther}

// areaOf maps the first path element under the root to its area.
var areaOf = map[string]string{
	"content": areaContent, "snapshots": areaSnapshots, "cache": areaCache,
	"cache-mounts": areaCacheMounts, "images": areaImages,
}

type duItem struct {
	id, typ  string
	size     int64
	lastUsed time.Time
	users    int
	shared   int64 // for images: bytes also used by others
}

type duArea struct {
	items, size, shared int64
}

type diskUsage struct {
	areas map[string]*duArea
	total int64
	items []duItem
}

func newDiskUsage() *diskUsage {
	u := &diskUsage{areas: map[string]*duArea{}}
	for _, a := range areas {
		u.areas[a] = &duArea{}
	}
	return u
}

// diskUsage walks the root once, counting every inode once (st_blocks, like du -x),
// and attributes blobs and snapshots to the images and cache records that use them.
func (s *store) diskUsage(ctx context.Context) (*diskUsage, error) {
	u := newDiskUsage()
	sizes := map[string]int64{} // "<area>/<top item>" → bytes
	if err := s.walk(ctx, u, sizes); err != nil {
		return nil, err
	}
	return u, s.attribute(ctx, u, sizes)
}

// walk adds the disk use under the root to u's areas and total, and to sizes by item.
func (s *store) walk(ctx context.Context, u *diskUsage, sizes map[string]int64) error {
	rootSt, err := os.Lstat(s.root)
	if err != nil {
		return err
	}
	rootDev := rootSt.Sys().(*syscall.Stat_t).Dev
	seen := map[[2]uint64]bool{}
	err = filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed by a concurrent build
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Dev != rootDev {
			if d.IsDir() {
				return filepath.SkipDir // a sandbox's overlay, not the store's bytes
			}
			return nil
		}
		key := [2]uint64{st.Dev, st.Ino}
		if seen[key] {
			return nil
		}
		seen[key] = true
		n := st.Blocks * 512
		u.total += n
		rel, _ := filepath.Rel(s.root, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		area := areaOther
		if a, ok := areaOf[parts[0]]; ok {
			area = a
		}
		u.areas[area].size += n
		if item := itemKey(area, parts); item != "" {
			sizes[item] += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("measuring %s: %w", s.root, err)
	}
	return nil
}

// itemKey names the listed item a path belongs to: a blob, a snapshot, a cache record,
// a cache mount or an image record.
func itemKey(area string, parts []string) string {
	switch area {
	case areaContent:
		// content/blobs/<alg>/<hex>
		if len(parts) == 4 && parts[1] == "blobs" {
			return area + "/" + parts[2] + ":" + parts[3]
		}
	case areaSnapshots:
		// snapshots/layers/<id>/...
		if len(parts) >= 3 && parts[1] == "layers" {
			return area + "/" + parts[2]
		}
	case areaCache, areaCacheMounts, areaImages:
		if len(parts) >= 2 && !strings.HasPrefix(parts[1], ".") {
			return area + "/" + parts[1]
		}
	}
	return ""
}

// attribute turns the measured sizes into items: which blobs and snapshots images and
// cache records use, and how many users each has.
func (s *store) attribute(ctx context.Context, u *diskUsage, sizes map[string]int64) error {
	users := map[digest.Digest]int{} // blob digest or diff id → number of users
	kinds := map[digest.Digest]string{}
	cacheRecs, err := s.index.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range cacheRecs {
		seen := map[digest.Digest]bool{}
		for _, l := range r.Ref.Layers {
			for _, d := range []digest.Digest{l.Digest, l.DiffID} {
				if !seen[d] {
					seen[d] = true
					users[d]++
				}
			}
			kinds[l.Digest] = "layer"
		}
	}
	if conv, err := s.converter(); err == nil {
		convs, _ := conv.Recorded()
		for _, c := range convs {
			if c.Layer.Digest != "" {
				kinds[c.Layer.Digest] = "converted layer"
			}
		}
	}
	recs, err := s.images.List(ctx)
	if err != nil {
		return err
	}
	// Images are counted by id: several names of one image are one user.
	type imageUse struct {
		rec      imagestore.Record
		names    []string
		contents imagestore.Contents
	}
	byID := map[string]*imageUse{}
	var order []string
	for _, r := range recs {
		id := r.ConfigDigest.String()
		if iu, ok := byID[id]; ok {
			if r.Name != "" {
				iu.names = append(iu.names, familiar(r.Name))
			}
			continue
		}
		c, err := s.images.Contents(ctx, r)
		if err != nil {
			continue
		}
		iu := &imageUse{rec: r, contents: c}
		if r.Name != "" {
			iu.names = []string{familiar(r.Name)}
		}
		byID[id] = iu
		order = append(order, id)
		kinds[c.Manifest], kinds[c.Config] = "manifest", "config"
		seen := map[digest.Digest]bool{}
		for _, d := range c.Blobs() {
			if !seen[d] {
				seen[d] = true
				users[d]++
			}
		}
		for _, l := range c.Layers {
			kinds[l.Digest] = "layer"
			if !seen[l.DiffID] {
				seen[l.DiffID] = true
				users[l.DiffID]++
			}
		}
	}

	for key, n := range sizes {
		area, id, _ := strings.Cut(key, "/")
		p := filepath.Join(s.root, pathOfItem(area, id))
		it := duItem{id: id, size: n, lastUsed: mtime(p)}
		switch area {
		case areaContent:
			d := digest.Digest(id)
			it.typ, it.users = kinds[d], users[d]
			if it.typ == "" {
				it.typ = "blob"
			}
		case areaSnapshots:
			it.typ, it.users = "snapshot", users[digest.Digest("sha256:"+id)]
		case areaCache:
			// A record's own cost is the layer its step made: the blob and the
			// snapshot; the layers below belong to the records of earlier steps.
			it.typ = "cache record"
			r, ok := cacheRecs[recordKey(id)]
			if !ok {
				break
			}
			it.id = recordKey(id).String()
			if n := len(r.Ref.Layers); n > 0 {
				top := r.Ref.Layers[n-1]
				it.size += sizes[areaContent+"/"+top.Digest.String()] + sizes[areaSnapshots+"/"+top.DiffID.Encoded()]
				it.users = users[top.DiffID]
			}
		case areaCacheMounts:
			it.typ = "cache mount"
		case areaImages:
			continue // listed per image below
		}
		u.areas[area].items++
		if it.users > 1 {
			u.areas[area].shared += n
		}
		u.items = append(u.items, it)
	}
	u.areas[areaImages].items = int64(len(recs))
	for _, id := range order {
		iu := byID[id]
		name := strings.Join(iu.names, ", ")
		if name == "" {
			name = "<none> " + imagestore.ShortID(iu.rec.ConfigDigest)
		}
		it := duItem{id: name, typ: "image", lastUsed: iu.rec.Created, users: 1}
		for _, d := range iu.contents.Blobs() {
			n := sizes[areaContent+"/"+d.String()]
			it.size += n
			if users[d] > 1 {
				it.shared += n
			}
		}
		u.items = append(u.items, it)
	}
	sort.SliceStable(u.items, func(i, j int) bool {
		a, b := u.items[i], u.items[j]
		if a.typ != b.typ {
			return a.typ < b.typ
		}
		return a.size > b.size
	})
	return nil
}

// recordKey is the cache key a record file under cache/ is named for.
func recordKey(file string) digest.Digest {
	alg, hex, _ := strings.Cut(strings.TrimSuffix(file, ".json"), "-")
	return digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
}

func pathOfItem(area, id string) string {
	switch area {
	case areaContent:
		alg, hex, _ := strings.Cut(id, ":")
		return filepath.Join("content", "blobs", alg, hex)
	case areaSnapshots:
		return filepath.Join("snapshots", "layers", id)
	case areaCache:
		return filepath.Join("cache", id)
	case areaCacheMounts:
		return filepath.Join("cache-mounts", id)
	}
	return ""
}

func mtime(p string) time.Time {
	fi, err := os.Lstat(p)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func (u *diskUsage) write(w io.Writer, verbose bool, humanSize func(int64) string) error {
	if verbose {
		var rows []any
		for _, it := range u.items {
			shared := "false"
			switch {
			case it.typ == "image":
				shared = humanSize(it.shared)
			case it.users > 1:
				shared = "true"
			}
			id := it.id
			switch {
			case strings.HasPrefix(id, "sha256:") && len(id) > 19:
				id = id[:19]
			case it.typ == "snapshot" && len(id) > 12:
				id = id[:12]
			}
			rows = append(rows, duRow{ID: id, Type: it.typ, Size: humanSize(it.size), LastUsed: ago(it.lastUsed), Shared: shared})
		}
		if err := writeFormatted(w, "table {{.ID}}\t{{.Type}}\t{{.Size}}\t{{.LastUsed}}\t{{.Shared}}", duHeaders, rows); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	var rows []any
	for _, a := range areas {
		x := u.areas[a]
		rows = append(rows, duSummary{Type: a, Items: fmt.Sprint(x.items), Size: humanSize(x.size), Shared: humanSize(x.shared)})
	}
	rows = append(rows, duSummary{Type: "Total", Size: humanSize(u.total)})
	return writeFormatted(w, "table {{.Type}}\t{{.Items}}\t{{.Size}}\t{{.Shared}}", duHeaders, rows)
}

type duRow struct{ ID, Type, Size, LastUsed, Shared string }

type duSummary struct{ Type, Items, Size, Shared string }

var duHeaders = map[string]string{
	"ID": "ID", "Type": "TYPE", "Size": "SIZE", "LastUsed": "LAST USED", "Shared": "SHARED", "Items": "ITEMS",
}
