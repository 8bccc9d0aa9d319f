package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/gc"
	"github.com/builderdev/builder/exporter"
)

type pruneOptions struct {
	all         bool
	filters     []string
	keepStorage string
	force       bool
	timeout     time.Duration
}

func newPruneCmd(g *globalOptions) *cobra.Command {
	o := &pruneOptions{}
	cmd := &cobra.Command{
		Use:   "prune [--all] [--filter until=24h] [--keep-storage 10GB] [-f]",
		Short: "Remove build cache",
		Long: `Remove build cache records and the layers (blobs and extracted snapshots) no
remaining record, image or remembered base image uses, RUN --mount=type=cache
directories nobody is using, and converted-layer records.

Without --all, records whose own layer an image in the store uses are kept (removing
them would free nothing); with --all they go too, while the images keep their layers.
--filter until=DURATION keeps what was used within DURATION. --keep-storage SIZE
removes least recently used records first and stops once the store takes at most SIZE.

Prune never removes what a running build uses: it waits (up to --timeout) until no
build runs on the root, and builds starting meanwhile wait for it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := o.policy()
			if err != nil {
				return err
			}
			if !o.force && !confirmPrune(cmd.InOrStdin(), cmd.ErrOrStderr(), p) {
				return nil
			}
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			lctx, cancel := context.WithTimeout(ctx, o.timeout)
			defer cancel()
			lock, err := gc.Exclusive(lctx, st.root, false)
			if errors.Is(err, gc.ErrBusy) {
				fmt.Fprintln(cmd.ErrOrStderr(), "waiting for the builds running on this root to finish")
				lock, err = gc.Exclusive(lctx, st.root, true)
			}
			if err != nil {
				return fmt.Errorf("pruning: %w", err)
			}
			defer lock.Release()
			r, err := st.prune(ctx, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Total reclaimed space: %s\n", humanSize(r.reclaimed))
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "also remove records whose layers images use (the images keep their layers)")
	f.StringArrayVar(&o.filters, "filter", nil, "until=DURATION: keep what was used within DURATION (such as 24h)")
	f.StringVar(&o.keepStorage, "keep-storage", "", "remove least recently used cache only until the store takes at most SIZE (such as 10GB)")
	f.BoolVarP(&o.force, "force", "f", false, "do not ask for confirmation")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long to wait for running builds")
	return cmd
}

func (o *pruneOptions) policy() (gc.Policy, error) {
	p := gc.Policy{All: o.all}
	for _, f := range o.filters {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "until":
			d, err := parseUntil(v)
			if err != nil {
				return p, fmt.Errorf("--filter %s: %w", f, err)
			}
			p.Until = d
		default:
			return p, fmt.Errorf("--filter %s: only until=DURATION is supported", f)
		}
	}
	if o.keepStorage != "" {
		n, err := units.RAMInBytes(o.keepStorage)
		if err != nil || n < 0 {
			return p, fmt.Errorf("--keep-storage %q: want a size such as 10GB", o.keepStorage)
		}
		p.KeepStorage = n
	}
	return p, nil
}

// parseUntil takes a duration (24h, 90m, and as buildx also 7d) or a timestamp
// (RFC 3339, or Unix seconds), which is turned into the time since it.
func parseUntil(v string) (time.Duration, error) {
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d, nil
	}
	if n, ok := strings.CutSuffix(v, "d"); ok {
		if d, err := time.ParseDuration(n + "h"); err == nil && d >= 0 {
			return 24 * d, nil
		}
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return max(time.Since(t), 0), nil
	}
	return 0, errors.New("want a duration such as 24h or an RFC 3339 time")
}

// confirmPrune asks, as buildx prune does, unless -f.
func confirmPrune(in io.Reader, w io.Writer, p gc.Policy) bool {
	what := "all dangling build cache"
	if p.All {
		what = "all build cache"
	}
	fmt.Fprintf(w, "WARNING! This will remove %s. Are you sure you want to continue? [y/N] ", what)
	line, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// pruneResult is what prune did.
type pruneResult struct {
	records, blobs, snapshots, mounts, converted int
	// reclaimed is measured: the store's disk use before minus after.
	reclaimed int64
	after     int64
}

// storeUse is what collection needs to know about the store: its disk use by item and
// who uses which layer.
type storeUse struct {
	total int64
	sizes map[string]int64 // du item keys, as itemKey names them
	recs  map[digest.Digest]cache.Record
	// image are the blobs and diff ids images in the store use; pinned adds the
	// remembered registry resolutions (base images).
	image, pinned map[digest.Digest]bool
	converted     []exporter.Conversion
}

func (s *store) use(ctx context.Context, measure bool) (*storeUse, error) {
	u := &storeUse{sizes: map[string]int64{}, image: map[digest.Digest]bool{}}
	if measure {
		du := newDiskUsage()
		if err := s.walk(ctx, du, u.sizes); err != nil {
			return nil, err
		}
		u.total = du.total
	}
	var err error
	if u.recs, err = s.index.List(ctx); err != nil {
		return nil, err
	}
	imgs, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range imgs {
		s.markManifest(ctx, digest.Digest(r.ManifestDigest.String()), u.image, 0)
	}
	if u.pinned, err = s.resolutionUses(ctx); err != nil {
		return nil, err
	}
	for d := range u.image {
		u.pinned[d] = true
	}
	conv, err := s.converter()
	if err != nil {
		return nil, err
	}
	if u.converted, err = conv.Recorded(); err != nil {
		return nil, err
	}
	return u, nil
}

// layerSize is what removing layer diffID frees: its snapshot, its uncompressed blob
// if stored, the compressed blobs records name for it and its converted blobs.
func (u *storeUse) layerSize(diffID digest.Digest) int64 {
	n := u.sizes[areaSnapshots+"/"+diffID.Encoded()] + u.sizes[areaContent+"/"+diffID.String()]
	seen := map[digest.Digest]bool{diffID: true}
	add := func(l cache.Layer) {
		if l.DiffID == diffID && !seen[l.Digest] {
			seen[l.Digest] = true
			n += u.sizes[areaContent+"/"+l.Digest.String()]
		}
	}
	for _, r := range u.recs {
		for _, l := range r.Ref.Layers {
			add(l)
		}
	}
	for _, c := range u.converted {
		add(c.Layer)
	}
	return n
}

// prune removes what p selects and then everything no record, image or remembered
// resolution uses. The caller holds the exclusive gc lock: no build is running, so
// anything unreferenced is garbage, not a layer a build is about to record.
func (s *store) prune(ctx context.Context, p gc.Policy) (pruneResult, error) {
	u, err := s.use(ctx, true)
	if err != nil {
		return pruneResult{}, err
	}
	keys, freed := s.selectRecords(u, p)
	res, err := s.removeRecords(ctx, u, keys, p.All)
	if err != nil {
		return res, err
	}
	if p.KeepStorage == 0 || u.total-freed > p.KeepStorage {
		var cutoff time.Time
		if p.Until > 0 {
			cutoff = time.Now().Add(-p.Until)
		}
		m, err := gc.PruneCacheMounts(ctx, s.cacheMounts(), cutoff)
		res.mounts = m.Instances
		if err != nil {
			return res, err
		}
	}
	after := newDiskUsage()
	if err := s.walk(ctx, after, map[string]int64{}); err != nil {
		return res, err
	}
	res.after = after.total
	res.reclaimed = max(u.total-after.total, 0)
	return res, nil
}

func (s *store) selectRecords(u *storeUse, p gc.Policy) ([]digest.Digest, int64) {
	recs := make([]gc.Record, 0, len(u.recs))
	for k, r := range u.recs {
		gr := gc.Record{Key: k, LastUsed: r.LastUsed, Size: u.sizes[areaCache+"/"+filepath.Base(s.index.Path(k))]}
		for _, l := range r.Ref.Layers {
			gr.DiffIDs = append(gr.DiffIDs, l.DiffID)
		}
		recs = append(recs, gr)
	}
	return gc.Select(recs, p, gc.Store{
		Total:     u.total,
		LayerSize: u.layerSize,
		InImage:   func(d digest.Digest) bool { return u.image[d] },
		Pinned:    func(d digest.Digest) bool { return u.pinned[d] },
	}, time.Now())
}

// removeRecords deletes the records keys, then sweeps: converted-layer records whose
// layer nothing uses any more (all of them with all) or whose blob is gone, and every
// blob and snapshot no remaining record, image, resolution or converted record uses.
func (s *store) removeRecords(ctx context.Context, u *storeUse, keys []digest.Digest, all bool) (pruneResult, error) {
	var res pruneResult
	var errs []error
	for _, k := range keys {
		if err := s.index.Delete(ctx, k); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(u.recs, k)
		res.records++
	}
	used := map[digest.Digest]bool{}
	for d := range u.pinned {
		used[d] = true
	}
	for _, r := range u.recs {
		for _, l := range r.Ref.Layers {
			used[l.Digest], used[l.DiffID] = true, true
		}
	}
	conv, err := s.converter()
	if err != nil {
		return res, err
	}
	for _, c := range u.converted {
		if c.Layer.Digest != "" && used[c.Layer.DiffID] && !all && s.content.Has(c.Layer.Digest) {
			used[c.Layer.Digest] = true
			continue
		}
		if err := conv.Forget(c); err != nil {
			errs = append(errs, err)
			continue
		}
		res.converted++
	}
	for key := range u.sizes {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		area, id, _ := strings.Cut(key, "/")
		switch area {
		case areaContent:
			d := digest.Digest(id)
			if used[d] || d.Validate() != nil {
				continue
			}
			if err := s.content.Delete(d); err != nil {
				errs = append(errs, err)
				continue
			}
			res.blobs++
		case areaSnapshots:
			d := digest.NewDigestFromEncoded(digest.SHA256, id)
			if used[d] || d.Validate() != nil {
				continue
			}
			if err := s.snapshots.Remove(ctx, id); err != nil {
				errs = append(errs, err)
				continue
			}
			res.snapshots++
		}
	}
	return res, errors.Join(errs...)
}

// Automatic garbage collection after builds.
const (
	gcKeepStorageEnv = "BUILDER_GC_KEEP_STORAGE"
	// gcMaxDefault caps the default limit, 10% of the store's filesystem.
	gcMaxDefault = 20 << 30
	gcStateName  = "gc-state.json"
)

// gcState remembers the last measurement, so that most builds decide from the content
// store's size alone (one stat per blob) that no collection is due.
type gcState struct {
	Total   int64 `json:"total"`
	Content int64 `json:"content"`
}

// autoGC removes least recently used build cache until the store takes at most the
// keep-storage limit: keepStorage (the --gc-keep-storage flag) if set, else
// $BUILDER_GC_KEEP_STORAGE, else 10% of the filesystem or 20 GiB, whichever is
// smaller; "0" turns it off. It is best effort: when other builds run on the root it
// does nothing (one of them collects later), and the caller only logs its error. The
// caller must have released its own build's lease (gc lock) first.
func (s *store) autoGC(ctx context.Context, keepStorage string, log io.Writer) error {
	limit, err := s.gcLimit(keepStorage)
	if err != nil || limit <= 0 {
		return err
	}
	statePath := filepath.Join(s.root, gcStateName)
	contentNow, err := s.contentBytes()
	if err != nil {
		return err
	}
	var prev gcState
	if dt, err := os.ReadFile(statePath); err == nil && json.Unmarshal(dt, &prev) == nil && prev.Content > 0 {
		if contentNow == prev.Content && prev.Total <= limit {
			return nil // nothing stored since the last measurement
		}
		// Snapshots grow with the blobs: scale the last measured total.
		if est := int64(float64(prev.Total) / float64(prev.Content) * float64(contentNow)); est < limit/10*9 {
			return nil
		}
	}
	lock, err := gc.Exclusive(ctx, s.root, false)
	if errors.Is(err, gc.ErrBusy) {
		return nil
	}
	if err != nil {
		return err
	}
	defer lock.Release()
	res, err := s.prune(ctx, gc.Policy{KeepStorage: limit})
	if err != nil {
		return fmt.Errorf("collecting garbage: %w", err)
	}
	if res.reclaimed > 0 && log != nil {
		fmt.Fprintf(log, "garbage collection: removed %d cache records, reclaimed %s (store %s, limit %s)\n",
			res.records, humanSize(res.reclaimed), humanSize(res.after), humanSize(limit))
	}
	if contentNow, err = s.contentBytes(); err != nil {
		return err
	}
	dt, _ := json.Marshal(gcState{Total: res.after, Content: contentNow})
	return cache.WriteFileAtomic(statePath, dt)
}

func (s *store) gcLimit(flag string) (int64, error) {
	v, from := flag, "--gc-keep-storage"
	if v == "" {
		v, from = os.Getenv(gcKeepStorageEnv), gcKeepStorageEnv
	}
	if v != "" {
		n, err := units.RAMInBytes(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s %q: want a size such as 10GB, or 0 for no automatic collection", from, v)
		}
		return n, nil
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(s.root, &fs); err != nil {
		return gcMaxDefault, nil
	}
	return min(int64(fs.Blocks)*fs.Bsize/10, gcMaxDefault), nil
}

// contentBytes is the disk use of the content store's blobs.
func (s *store) contentBytes() (int64, error) {
	dir := filepath.Join(s.root, "content", "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("listing blobs: %w", err)
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
	}
	return n, nil
}
