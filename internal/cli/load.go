package cli

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/content"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/internal/registry"
)

func newLoadCmd(g *globalOptions) *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a docker-save or OCI layout tar archive",
		Long: `Load the images of a tar archive (plain or gzip) into the store: docker save
archives (manifest.json) and OCI image layouts as tar (oci-layout, index.json; from an
index the image for this machine's platform). Images are named by the archive's
RepoTags or by their io.containerd.image.name / org.opencontainers.image.ref.name
annotation; images without a name load by ID.

Blobs are verified while they are stored: OCI blobs against their digests, docker
archive layers against the config's diff ids. Without -i the archive is read from stdin.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var in io.Reader = cmd.InOrStdin()
			if input == "" || input == "-" {
				if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return errors.New("requested load from stdin, but stdin is a terminal; use -i FILE or redirect")
				}
			}
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			if input != "" && input != "-" {
				f, err := os.Open(input)
				if err != nil {
					return fmt.Errorf("loading: %w", err)
				}
				defer f.Close()
				in = f
			}
			loaded, err := st.load(ctx, in)
			if !quiet {
				for _, l := range loaded {
					fmt.Fprintln(cmd.OutOrStdout(), l)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "read from a tar archive FILE instead of stdin")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress the load output")
	return cmd
}

// maxJSONEntry bounds what the first pass over an archive keeps in memory: manifests,
// indexes and configs are small JSON documents; layers are never kept.
const maxJSONEntry = 8 << 20

// archive is the first pass over a loaded tar: the small JSON files by clean path,
// and symlinks (older docker archives link repeated layers).
type archive struct {
	f        *os.File
	small    map[string][]byte
	links    map[string]string
	regulars map[string]bool
}

// load reads an archive from in and stores its images, returning the lines to print.
func (s *store) load(ctx context.Context, in io.Reader) ([]string, error) {
	tmp, err := s.tempDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	f, err := seekableTar(ctx, in, tmp)
	if err != nil {
		return nil, fmt.Errorf("loading: %w", err)
	}
	defer f.Close()
	a, err := scanArchive(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("loading: %w", err)
	}
	switch {
	case a.small["oci-layout"] != nil && a.small["index.json"] != nil:
		return s.loadOCI(ctx, a)
	case a.small["manifest.json"] != nil:
		return s.loadDocker(ctx, a)
	}
	return nil, errors.New("loading: the archive is neither a docker save archive (no manifest.json) nor an OCI layout (no oci-layout and index.json)")
}

// seekableTar returns in as a file that can be read twice: a plain regular file as it
// is, anything else (stdin, gzip) spooled, decompressed, into dir.
func seekableTar(ctx context.Context, in io.Reader, dir string) (*os.File, error) {
	br := bufio.NewReaderSize(in, 64<<10)
	magic, _ := br.Peek(2)
	isGzip := bytes.Equal(magic, []byte{0x1f, 0x8b})
	if f, ok := in.(*os.File); ok && !isGzip {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			if _, err := f.Seek(0, io.SeekStart); err == nil {
				return f, nil
			}
		}
	}
	var src io.Reader = br
	if isGzip {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer gz.Close()
		src = gz
	}
	out, err := os.CreateTemp(dir, "archive-*.tar")
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(out, content.ContextReader(ctx, src)); err != nil {
		out.Close()
		return nil, fmt.Errorf("reading archive: %w", err)
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		out.Close()
		return nil, err
	}
	return out, nil
}

// scanArchive is the first pass: it keeps every small JSON file and notes the rest.
func scanArchive(ctx context.Context, f *os.File) (*archive, error) {
	a := &archive{f: f, small: map[string][]byte{}, links: map[string]string{}, regulars: map[string]bool{}}
	err := a.walk(ctx, func(name string, hdr *tar.Header, r io.Reader) error {
		if hdr.Size > maxJSONEntry {
			return nil
		}
		br := bufio.NewReader(r)
		first, err := br.Peek(1)
		if err != nil || (first[0] != '{' && first[0] != '[') {
			return nil
		}
		dt, err := io.ReadAll(br)
		if err != nil {
			return err
		}
		a.small[name] = dt
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// walk calls fn for each regular file of the archive (by clean relative path),
// recording symlinks and file names on the way.
func (a *archive) walk(ctx context.Context, fn func(name string, hdr *tar.Header, r io.Reader) error) error {
	if _, err := a.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tr := tar.NewReader(a.f)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading archive: %w", err)
		}
		name := cleanEntry(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			a.links[name] = cleanEntry(path.Join(path.Dir(name), hdr.Linkname))
		case tar.TypeReg:
			a.regulars[name] = true
			if err := fn(name, hdr, tr); err != nil {
				return err
			}
		}
	}
}

func cleanEntry(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// resolve follows archive symlinks from name.
func (a *archive) resolve(name string) string {
	name = cleanEntry(name)
	for range 16 {
		t, ok := a.links[name]
		if !ok {
			break
		}
		name = t
	}
	return name
}

// loadDocker stores the images of a docker save archive. Layers are stored once per
// file, compressed with pgzip when the archive has them plain, and a layer already in
// the store (same diff id) is shared instead of stored again.
func (s *store) loadDocker(ctx context.Context, a *archive) ([]string, error) {
	var entries []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(a.small["manifest.json"], &entries); err != nil {
		return nil, fmt.Errorf("loading: decoding manifest.json: %w", err)
	}
	type image struct {
		rawCfg  []byte
		diffIDs []digest.Digest
		layers  []string
		names   []string
	}
	var imgs []image
	need := map[string]bool{}
	for _, e := range entries {
		cfgName := a.resolve(e.Config)
		raw := a.small[cfgName]
		if raw == nil {
			return nil, fmt.Errorf("loading: config %s named in manifest.json is not in the archive", e.Config)
		}
		var cfg struct {
			RootFS struct {
				DiffIDs []digest.Digest `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return nil, fmt.Errorf("loading: decoding config %s: %w", e.Config, err)
		}
		if len(cfg.RootFS.DiffIDs) != len(e.Layers) {
			return nil, fmt.Errorf("loading: config %s lists %d layers, manifest.json %d", e.Config, len(cfg.RootFS.DiffIDs), len(e.Layers))
		}
		im := image{rawCfg: raw, diffIDs: cfg.RootFS.DiffIDs, names: e.RepoTags}
		for _, l := range e.Layers {
			p := a.resolve(l)
			if !a.regulars[p] {
				return nil, fmt.Errorf("loading: layer %s named in manifest.json is not in the archive", l)
			}
			im.layers = append(im.layers, p)
			need[p] = true
		}
		imgs = append(imgs, im)
	}
	known, err := s.knownLayers(ctx)
	if err != nil {
		return nil, err
	}
	stored := map[string]cache.Layer{}
	err = a.walk(ctx, func(name string, _ *tar.Header, r io.Reader) error {
		if !need[name] {
			return nil
		}
		l, err := storeLayer(ctx, s.content, r, known)
		if err != nil {
			return fmt.Errorf("loading layer %s: %w", name, err)
		}
		stored[name] = l
		known[l.DiffID] = l
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading: %w", err)
	}
	var out []string
	for _, im := range imgs {
		layers := make([]cache.Layer, len(im.layers))
		for i, p := range im.layers {
			l := stored[p]
			if l.DiffID != im.diffIDs[i] {
				return out, fmt.Errorf("loading: layer %s has diff id %s, the config says %s", p, l.DiffID, im.diffIDs[i])
			}
			layers[i] = l
		}
		md, err := storeManifest(ctx, s, im.rawCfg, layers)
		if err != nil {
			return out, err
		}
		lines, err := s.nameLoaded(ctx, md, im.names)
		out = append(out, lines...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// knownLayers maps the diff ids of layers whose blobs are in the store (from the build
// cache and the image store) to those blobs, so a loaded plain layer can share them.
func (s *store) knownLayers(ctx context.Context) (map[digest.Digest]cache.Layer, error) {
	known := map[digest.Digest]cache.Layer{}
	recs, err := s.index.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		for _, l := range r.Ref.Layers {
			known[l.DiffID] = l
		}
	}
	imgs, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range imgs {
		c, err := s.images.Contents(ctx, r)
		if err != nil {
			continue
		}
		for _, l := range c.Layers {
			known[l.DiffID] = l
		}
	}
	for id, l := range known {
		if !s.content.Has(l.Digest) {
			delete(known, id)
		}
	}
	return known, nil
}

// storeManifest writes rawCfg (kept byte for byte: it is the image ID) and an OCI
// manifest over layers into the content store and returns the manifest digest.
func storeManifest(ctx context.Context, s *store, rawCfg []byte, layers []cache.Layer) (v1.Hash, error) {
	cd, err := s.content.WriteBytes(ctx, rawCfg)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("storing config: %w", err)
	}
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(rawCfg))},
		Layers:    []ocispec.Descriptor{},
	}
	m.SchemaVersion = 2
	for _, l := range layers {
		mt := l.MediaType
		switch types.MediaType(mt) {
		case "", types.DockerLayer:
			mt = ocispec.MediaTypeImageLayerGzip
		case types.DockerUncompressedLayer:
			mt = ocispec.MediaTypeImageLayer
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: l.Digest, Size: l.Size})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return v1.Hash{}, err
	}
	md, err := s.content.WriteBytes(ctx, raw)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("storing manifest: %w", err)
	}
	return v1.NewHash(md.String())
}

// nameLoaded records the stored manifest md under names, or untagged without any, and
// returns docker load's lines.
func (s *store) nameLoaded(ctx context.Context, md v1.Hash, names []string) ([]string, error) {
	img, err := exporter.Stored(ctx, s.content, md)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		if _, err := s.images.Put(ctx, "", img); err != nil {
			return nil, err
		}
		id, err := img.ConfigName()
		if err != nil {
			return nil, err
		}
		return []string{"Loaded image ID: " + id.String()}, nil
	}
	var out []string
	for _, n := range names {
		if _, err := s.images.Put(ctx, n, img); err != nil {
			return out, err
		}
		norm, err := registry.Normalize(n)
		if err != nil {
			return out, err
		}
		out = append(out, "Loaded image: "+familiar(norm))
	}
	return out, nil
}

// loadOCI stores the images an OCI layout's index.json names. Manifests and configs are
// stored byte for byte (so digests stay), every blob is checked against its digest, and
// from an index the manifest for this machine's platform is taken.
func (s *store) loadOCI(ctx context.Context, a *archive) ([]string, error) {
	var idx v1.IndexManifest
	if err := json.Unmarshal(a.small["index.json"], &idx); err != nil {
		return nil, fmt.Errorf("loading: decoding index.json: %w", err)
	}
	blob := func(d v1.Hash) ([]byte, error) {
		p := a.resolve(path.Join("blobs", d.Algorithm, d.Hex))
		dt := a.small[p]
		if dt == nil {
			return nil, fmt.Errorf("blob %s is not in the archive (or is not JSON)", d)
		}
		if got := digest.FromBytes(dt); got.String() != d.String() {
			return nil, fmt.Errorf("blob %s has digest %s", d, got)
		}
		return dt, nil
	}
	want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	type image struct {
		manifest v1.Hash
		raw      []byte
		m        v1.Manifest
		names    []string
	}
	var imgs []image
	need := map[string]v1.Descriptor{}
	for _, top := range idx.Manifests {
		desc := top
		raw, err := blob(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("loading: %w", err)
		}
		// Nested indexes (multi-platform images) narrow down to one manifest.
		for depth := 0; isIndex(desc.MediaType, raw); depth++ {
			if depth > 4 {
				return nil, fmt.Errorf("loading: indexes nested too deep at %s", desc.Digest)
			}
			var child v1.IndexManifest
			if err := json.Unmarshal(raw, &child); err != nil {
				return nil, fmt.Errorf("loading: decoding index %s: %w", desc.Digest, err)
			}
			next, err := registry.SelectPlatform(child.Manifests, want)
			if err != nil {
				return nil, fmt.Errorf("loading: index %s: %w", desc.Digest, err)
			}
			desc = next
			if raw, err = blob(desc.Digest); err != nil {
				return nil, fmt.Errorf("loading: %w", err)
			}
		}
		var m v1.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("loading: decoding manifest %s: %w", desc.Digest, err)
		}
		if _, err := blob(m.Config.Digest); err != nil {
			return nil, fmt.Errorf("loading: config of %s: %w", desc.Digest, err)
		}
		for _, l := range m.Layers {
			p := a.resolve(path.Join("blobs", l.Digest.Algorithm, l.Digest.Hex))
			if !a.regulars[p] {
				return nil, fmt.Errorf("loading: layer %s of %s is not in the archive", l.Digest, desc.Digest)
			}
			need[p] = l
		}
		imgs = append(imgs, image{manifest: desc.Digest, raw: raw, m: m, names: ociNames(top.Annotations)})
	}
	err := a.walk(ctx, func(name string, _ *tar.Header, r io.Reader) error {
		l, ok := need[name]
		if !ok {
			return nil
		}
		if _, err := s.content.WriteBlob(ctx, content.ContextReader(ctx, r), l.Size, digest.Digest(l.Digest.String())); err != nil {
			return fmt.Errorf("loading layer %s: %w", l.Digest, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading: %w", err)
	}
	var out []string
	for _, im := range imgs {
		rawCfg, err := blob(im.m.Config.Digest)
		if err != nil {
			return out, err
		}
		if _, err := s.content.WriteBytes(ctx, rawCfg); err != nil {
			return out, fmt.Errorf("loading: storing config: %w", err)
		}
		if _, err := s.content.WriteBytes(ctx, im.raw); err != nil {
			return out, fmt.Errorf("loading: storing manifest: %w", err)
		}
		lines, err := s.nameLoaded(ctx, im.manifest, im.names)
		out = append(out, lines...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func isIndex(mt types.MediaType, raw []byte) bool {
	if mt != "" {
		return mt.IsIndex()
	}
	var probe struct {
		Manifests json.RawMessage `json:"manifests"`
	}
	return json.Unmarshal(raw, &probe) == nil && probe.Manifests != nil
}

// ociNames is the name an index entry carries: containerd's full-name annotation, or
// the OCI ref name when that is a full reference ("reg/app:v1") rather than a bare tag.
func ociNames(ann map[string]string) []string {
	if n := ann["io.containerd.image.name"]; n != "" {
		if _, err := registry.Normalize(n); err == nil {
			return []string{n}
		}
	}
	if n := ann[ocispec.AnnotationRefName]; strings.ContainsAny(n, ":/") {
		if _, err := registry.Normalize(n); err == nil {
			return []string{n}
		}
	}
	return nil
}
