package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/exporter"
	"github.com/builderdev/builder/exporter/dockertar"
	"github.com/builderdev/builder/exporter/ocilayout"
	"github.com/builderdev/builder/exporter/rootfs"
	"github.com/builderdev/builder/frontend/platform"
	"github.com/builderdev/builder/internal/progress"
	"github.com/builderdev/builder/internal/registry"
)

// Output is one parsed --output spec.
type Output struct {
	// Type is image (type=registry is image with Push), docker, oci, local or tar.
	Type string
	// Dest is the file (or directory, for oci with tar=false and for local) to write;
	// "-" is standard output (docker, oci, tar).
	Dest string
	// Names are image names (type=image name=a,b; for docker/oci the tags to record).
	Names []string
	// Push sends a type=image output to its registry.
	Push bool
	// Insecure lets a push use plain http (registry.insecure=true).
	Insecure bool
	// Tar is false for an OCI layout written as a directory.
	Tar bool
	// Compression is how the image's layer blobs are encoded.
	Compression exporter.Compress
	// OCIMediaTypes is oci-mediatypes=; nil is the default of the type (Docker media
	// types for docker, OCI for the others; OCI also whenever layers are zstd).
	OCIMediaTypes *bool
	// Annotations are manifest annotations (annotation.K=V, annotation-manifest.K=V).
	Annotations map[string]string
	// PlatformAnnotations are manifest annotations of one platform's image only
	// (annotation[linux/arm64].K=V), by normalised platform.
	PlatformAnnotations map[string]map[string]string
	// DescriptorAnnotations go on the manifest's descriptor in an OCI layout's
	// index.json (annotation-manifest-descriptor.K=V); in a multi-platform build, on
	// each manifest's descriptor in the index.
	DescriptorAnnotations map[string]string
	// IndexAnnotations go on the index of a multi-platform build (annotation-index.K=V).
	IndexAnnotations map[string]string
	// IndexDescriptorAnnotations go on the index's descriptor in an OCI layout's
	// index.json (annotation-index-descriptor.K=V).
	IndexDescriptorAnnotations map[string]string
}

// image says whether the output is an image (as opposed to a bare filesystem).
func (o Output) image() bool { return o.Type == "image" || o.Type == "docker" || o.Type == "oci" }

// ociTypes resolves oci-mediatypes: explicit, else OCI except for docker, and always
// OCI for zstd (Docker media types cannot name it; an explicit false is refused at
// parse time, as in BuildKit).
func (o Output) ociTypes() bool {
	if o.OCIMediaTypes != nil {
		return *o.OCIMediaTypes
	}
	return o.Type != "docker" || o.Compression.Type == exporter.Zstd
}

// attrsByType lists the attributes each output type takes, besides type=.
var attrsByType = map[string][]string{
	"image":  {"name", "push", "registry.insecure", "compression", "compression-level", "force-compression", "oci-mediatypes", "annotation", "rewrite-timestamp"},
	"docker": {"dest", "name", "compression", "compression-level", "force-compression", "oci-mediatypes", "annotation", "rewrite-timestamp"},
	"oci":    {"dest", "name", "tar", "compression", "compression-level", "force-compression", "oci-mediatypes", "annotation", "rewrite-timestamp"},
	"local":  {"dest"},
	"tar":    {"dest"},
}

// annotationKey is BuildKit's annotation attribute: annotation[-TYPE][[PLATFORM]].KEY.
var annotationKey = regexp.MustCompile(`^annotation(?:-([a-z-]+))?(?:\[([A-Za-z0-9_/-]+)\])?\.(\S+)$`)

// parseOutput reads a buildx-style output spec: comma-separated key=value pairs, values
// CSV-quoted when they contain commas ("name=\"a,b\""). As in buildx, a spec without
// "=" is a destination: "-" means type=tar,dest=-, anything else type=local,dest=SPEC.
func parseOutput(spec string) (Output, error) {
	if !strings.Contains(spec, "=") {
		if spec == "" {
			return Output{}, fmt.Errorf("output %q: empty", spec)
		}
		if spec == "-" {
			return Output{Type: "tar", Dest: "-", Tar: true}, nil
		}
		return Output{Type: "local", Dest: spec, Tar: true}, nil
	}
	r := csv.NewReader(strings.NewReader(spec))
	fields, err := r.Read()
	if err != nil {
		return Output{}, fmt.Errorf("output %q: %w", spec, err)
	}
	o := Output{Tar: true}
	var attrs []string
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Output{}, fmt.Errorf("output %q: %q is not key=value", spec, f)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		attr := k
		bad := func(err error) (Output, error) {
			return Output{}, fmt.Errorf("output %q: %s=%q: %w", spec, k, v, err)
		}
		switch {
		case k == "type":
			o.Type = v
			continue
		case k == "dest":
			o.Dest = v
		case k == "name" || k == "names":
			attr = "name"
			for _, n := range strings.Split(v, ",") {
				if n = strings.TrimSpace(n); n != "" {
					o.Names = append(o.Names, n)
				}
			}
		case k == "push", k == "registry.insecure", k == "tar", k == "force-compression", k == "oci-mediatypes", k == "rewrite-timestamp":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad(fmt.Errorf("not true or false"))
			}
			switch k {
			case "push":
				o.Push = b
			case "registry.insecure":
				o.Insecure = b
			case "tar":
				o.Tar = b
			case "force-compression":
				o.Compression.Force = b
			case "oci-mediatypes":
				o.OCIMediaTypes = &b
			case "rewrite-timestamp":
				// Accepted for buildx users: with SOURCE_DATE_EPOCH the layers this
				// build makes always have their times clamped to it.
			}
		case k == "compression":
			if o.Compression.Type, err = exporter.ParseCompression(v); err != nil {
				return bad(err)
			}
		case k == "compression-level":
			n, err := strconv.Atoi(v)
			if err != nil {
				return bad(fmt.Errorf("not an integer"))
			}
			o.Compression.Level = &n
		case strings.HasPrefix(k, "annotation"):
			attr = "annotation"
			// Keys are case-sensitive: take them from the spec as written.
			rawKey := strings.TrimSpace(f[:strings.Index(f, "=")])
			m := annotationKey.FindStringSubmatch(rawKey)
			if m == nil {
				return bad(fmt.Errorf("want annotation.KEY, annotation-manifest.KEY or annotation-manifest-descriptor.KEY"))
			}
			var plat string
			if m[2] != "" {
				p, err := platform.Parse(m[2])
				if err != nil {
					return bad(err)
				}
				plat = platform.Format(p)
			}
			switch {
			case (m[1] == "" || m[1] == "manifest") && plat != "":
				if o.PlatformAnnotations == nil {
					o.PlatformAnnotations = map[string]map[string]string{}
				}
				o.PlatformAnnotations[plat] = setAnnotation(o.PlatformAnnotations[plat], m[3], v)
			case m[1] == "" || m[1] == "manifest":
				o.Annotations = setAnnotation(o.Annotations, m[3], v)
			case m[1] == "manifest-descriptor":
				o.DescriptorAnnotations = setAnnotation(o.DescriptorAnnotations, m[3], v)
			case (m[1] == "index" || m[1] == "index-descriptor") && plat != "":
				return bad(fmt.Errorf("an index annotation applies to every platform, not %s", plat))
			case m[1] == "index":
				o.IndexAnnotations = setAnnotation(o.IndexAnnotations, m[3], v)
			case m[1] == "index-descriptor":
				o.IndexDescriptorAnnotations = setAnnotation(o.IndexDescriptorAnnotations, m[3], v)
			default:
				return bad(fmt.Errorf("unknown annotation type %q", m[1]))
			}
		default:
			attr = "?" + k
		}
		attrs = append(attrs, attr)
	}
	if o.Type == "registry" {
		o.Type, o.Push = "image", true
	}
	allowed, known := attrsByType[o.Type]
	switch {
	case o.Type == "":
		return Output{}, fmt.Errorf("output %q: missing type= (image, registry, docker, oci, local or tar)", spec)
	case !known:
		return Output{}, fmt.Errorf("output %q: unknown type %q (want image, registry, docker, oci, local or tar)", spec, o.Type)
	}
	var unknown []string
	for _, a := range attrs {
		if !slices.Contains(allowed, a) {
			unknown = append(unknown, strings.TrimPrefix(a, "?"))
		}
	}
	if len(unknown) > 0 {
		return Output{}, fmt.Errorf("output %q: unknown attribute %s for type=%s (it takes %s)",
			spec, quoteJoin(unknown), o.Type, strings.Join(allowed, ", "))
	}
	if err := o.Compression.Validate(); err != nil {
		return Output{}, fmt.Errorf("output %q: %w", spec, err)
	}
	if o.Compression.Type == exporter.Zstd && o.OCIMediaTypes != nil && !*o.OCIMediaTypes {
		return Output{}, fmt.Errorf(`output %q: compression=zstd conflicts with oci-mediatypes=false`, spec)
	}
	if len(o.DescriptorAnnotations) > 0 && o.Type != "oci" {
		return Output{}, fmt.Errorf("output %q: annotation-manifest-descriptor applies to type=oci only (the descriptor is in its index.json)", spec)
	}
	if len(o.IndexDescriptorAnnotations) > 0 && o.Type != "oci" {
		return Output{}, fmt.Errorf("output %q: annotation-index-descriptor applies to type=oci only (the descriptor is in its index.json)", spec)
	}
	if (len(o.Annotations) > 0 || len(o.PlatformAnnotations) > 0 || len(o.IndexAnnotations) > 0) && !o.ociTypes() {
		return Output{}, fmt.Errorf(`output %q: cannot export annotations with oci-mediatypes=false`, spec)
	}
	switch o.Type {
	case "docker", "oci", "local", "tar":
		if o.Dest == "" {
			return Output{}, fmt.Errorf("output %q: type=%s needs dest=PATH", spec, o.Type)
		}
		if o.Dest == "-" && (o.Type == "local" || (o.Type == "oci" && !o.Tar)) {
			return Output{}, fmt.Errorf("output %q: a directory output cannot go to standard output", spec)
		}
	case "image":
		if len(o.Names) == 0 {
			return Output{}, fmt.Errorf("output %q: type=image needs name=REF", spec)
		}
	}
	return o, nil
}

func setAnnotation(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

func quoteJoin(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// sourceDateEpoch is the build arg and environment variable of reproducible builds.
const sourceDateEpoch = "SOURCE_DATE_EPOCH"

// parseOutputs parses every --output; at most one may write to standard output.
func parseOutputs(specs []string) ([]Output, error) {
	outputs := make([]Output, 0, len(specs))
	stdout := 0
	for _, spec := range specs {
		out, err := parseOutput(spec)
		if err != nil {
			return nil, err
		}
		if out.Dest == "-" {
			stdout++
		}
		outputs = append(outputs, out)
	}
	if stdout > 1 {
		return nil, errors.New("only one --output can write to standard output (dest=-)")
	}
	return outputs, nil
}

// insecureHosts are the registries of outputs with registry.insecure=true.
func insecureHosts(outputs []Output) []string {
	var hosts []string
	for _, o := range outputs {
		if !o.Insecure {
			continue
		}
		for _, n := range o.Names {
			if ref, err := name.ParseReference(n); err == nil {
				hosts = append(hosts, ref.Context().RegistryStr())
			}
		}
	}
	return hosts
}

// exports writes one build's result to its outputs: with one platform an image, with
// several an index of one image per platform. Images are made per platform and per
// distinct compression, media types and annotations; their layer blobs come from the
// converter, so a compression is computed once per layer, ever.
type exports struct {
	st     *store
	reg    *registry.Client
	conv   *exporter.Converter
	builds []*platformBuild
	epoch  *time.Time
	stdout io.Writer
	p      *progress.Printer
	images map[string]v1.Image
}

// metadata is what --metadata-file and --iidfile report about the exported image.
type metadata struct {
	manifestDigest v1.Hash
	configDigest   v1.Hash // zero for a multi-platform index
	mediaType      types.MediaType
	size           int64
	names          []string
	image          bool // false when only filesystem outputs were asked for
}

// imageSpec is how an output wants its images made.
type imageSpec struct {
	comp        exporter.Compress
	oci         bool
	annotations map[string]string
	platform    map[string]map[string]string // extra manifest annotations by platform
}

func specOf(out Output) imageSpec {
	return imageSpec{comp: out.Compression, oci: out.ociTypes(), annotations: out.Annotations, platform: out.PlatformAnnotations}
}

// image returns build b's image made as spec says.
func (e *exports) image(ctx context.Context, b *platformBuild, spec imageSpec) (v1.Image, error) {
	annotations := maps.Clone(spec.annotations)
	if extra := spec.platform[platform.Format(b.platform)]; len(extra) > 0 {
		if annotations == nil {
			annotations = map[string]string{}
		}
		maps.Copy(annotations, extra)
	}
	key, err := json.Marshal(struct {
		P string
		C exporter.Compress
		O bool
		A map[string]string
	}{platform.Format(b.platform), spec.comp, spec.oci, annotations})
	if err != nil {
		return nil, err
	}
	if img, ok := e.images[string(key)]; ok {
		return img, nil
	}
	layers, err := e.conv.Layers(ctx, b.final.Layers, spec.comp)
	if err != nil {
		return nil, err
	}
	opts := []exporter.ImageOption{exporter.WithManifestAnnotations(annotations)}
	if !spec.oci {
		opts = append(opts, exporter.WithDockerMediaTypes())
	}
	img, err := exporter.Image(ctx, e.st.content, layers, b.cfg, opts...)
	if err != nil {
		return nil, fmt.Errorf("assembling image: %w", err)
	}
	if e.images == nil {
		e.images = map[string]v1.Image{}
	}
	e.images[string(key)] = img
	return img, nil
}

// index returns the multi-platform index of every build's image made as spec says,
// with the output's index and manifest-descriptor annotations.
func (e *exports) index(ctx context.Context, spec imageSpec, out Output) (v1.ImageIndex, error) {
	images := make([]exporter.PlatformImage, len(e.builds))
	for i, b := range e.builds {
		img, err := e.image(ctx, b, spec)
		if err != nil {
			return nil, err
		}
		images[i] = exporter.PlatformImage{
			Platform:    v1.Platform{OS: b.platform.OS, Architecture: b.platform.Architecture, Variant: b.platform.Variant, OSVersion: b.platform.OSVersion},
			Image:       img,
			Annotations: out.DescriptorAnnotations,
		}
	}
	opts := []exporter.ImageOption{exporter.WithManifestAnnotations(out.IndexAnnotations)}
	if !spec.oci {
		opts = append(opts, exporter.WithDockerMediaTypes())
	}
	idx, err := exporter.Index(images, opts...)
	if err != nil {
		return nil, fmt.Errorf("assembling index: %w", err)
	}
	return idx, nil
}

// run stores the image under tags and writes every output, in order. The metadata
// describes the first image output, or the tagged image when there is none.
func (e *exports) run(ctx context.Context, tags []string, outputs []Output) (metadata, error) {
	if len(e.builds) > 1 {
		return e.runIndex(ctx, outputs)
	}
	b := e.builds[0]
	def, err := e.image(ctx, b, imageSpec{oci: true})
	if err != nil {
		return metadata{}, err
	}
	md, err := describe(def, tags)
	if err != nil {
		return metadata{}, err
	}
	md.image = len(tags) > 0
	for _, t := range tags {
		if _, err := e.st.images.Put(ctx, t, def); err != nil {
			return metadata{}, fmt.Errorf("storing image %s: %w", t, err)
		}
		e.p.Printf("naming to %s", t)
	}
	described := false
	for _, out := range outputs {
		if !out.image() {
			if err := e.filesystem(ctx, out); err != nil {
				return metadata{}, err
			}
			continue
		}
		names := out.Names
		if len(names) == 0 {
			names = tags
		}
		img, err := e.image(ctx, b, specOf(out))
		if err != nil {
			return metadata{}, fmt.Errorf("exporting %s: %w", out.Type, err)
		}
		if !described {
			if md, err = describe(img, names); err != nil {
				return metadata{}, err
			}
			md.image, described = true, true
		}
		if err := e.imageOutput(ctx, out, img, names); err != nil {
			return metadata{}, err
		}
	}
	return md, nil
}

// runIndex writes the outputs of a multi-platform build (checkPlatformOutputs has
// refused those that cannot hold an index). The metadata describes the first image
// output's index, or the default one.
func (e *exports) runIndex(ctx context.Context, outputs []Output) (metadata, error) {
	def, err := e.index(ctx, imageSpec{oci: true}, Output{})
	if err != nil {
		return metadata{}, err
	}
	md, err := describeIndex(def, nil)
	if err != nil {
		return metadata{}, err
	}
	described := false
	for _, out := range outputs {
		if !out.image() {
			if err := e.filesystem(ctx, out); err != nil {
				return metadata{}, err
			}
			continue
		}
		idx, err := e.index(ctx, specOf(out), out)
		if err != nil {
			return metadata{}, fmt.Errorf("exporting %s: %w", out.Type, err)
		}
		if !described {
			if md, err = describeIndex(idx, out.Names); err != nil {
				return metadata{}, err
			}
			md.image, described = true, true
		}
		if err := e.indexOutput(ctx, out, idx); err != nil {
			return metadata{}, err
		}
	}
	return md, nil
}

func (e *exports) indexOutput(ctx context.Context, out Output, idx v1.ImageIndex) error {
	where := out.Dest
	if where == "-" {
		where = "standard output"
	}
	switch out.Type {
	case "oci":
		c := ocilayout.Config{Dest: out.Dest, Names: out.Names, Tar: out.Tar, Annotations: out.IndexDescriptorAnnotations}
		var err error
		if out.Dest == "-" {
			err = c.WriteIndexTo(ctx, idx, e.stdout)
		} else {
			err = c.ExportIndex(ctx, idx)
		}
		if err != nil {
			return fmt.Errorf("exporting OCI layout to %s: %w", where, err)
		}
		e.p.Printf("exported OCI layout (%d platforms) to %s", len(e.builds), where)
	case "image":
		for _, n := range out.Names {
			if err := e.reg.PushIndex(ctx, n, idx); err != nil {
				return err
			}
			e.p.Printf("pushed %s (%d platforms)", n, len(e.builds))
		}
	default:
		return fmt.Errorf("output type=%s cannot hold a multi-platform image", out.Type)
	}
	return nil
}

func (e *exports) imageOutput(ctx context.Context, out Output, img v1.Image, names []string) error {
	where := out.Dest
	if where == "-" {
		where = "standard output"
	}
	switch out.Type {
	case "docker":
		var err error
		if out.Dest == "-" {
			err = dockertar.WriteTo(ctx, img, names, e.stdout)
		} else {
			err = dockertar.Write(ctx, img, names, out.Dest)
		}
		if err != nil {
			return fmt.Errorf("exporting docker tarball to %s: %w", where, err)
		}
		e.p.Printf("exported docker tarball to %s", where)
	case "oci":
		c := ocilayout.Config{Dest: out.Dest, Names: names, Tar: out.Tar, Annotations: out.DescriptorAnnotations}
		var err error
		if out.Dest == "-" {
			err = c.WriteTo(ctx, img, e.stdout)
		} else {
			err = c.Export(ctx, img)
		}
		if err != nil {
			return fmt.Errorf("exporting OCI layout to %s: %w", where, err)
		}
		e.p.Printf("exported OCI layout to %s", where)
	case "image":
		for _, n := range names {
			if _, err := e.st.images.Put(ctx, n, img); err != nil {
				return fmt.Errorf("storing image %s: %w", n, err)
			}
			if out.Push {
				if err := e.reg.Push(ctx, n, img); err != nil {
					return err
				}
				e.p.Printf("pushed %s", n)
			}
		}
	}
	return nil
}

// view mounts a read-only view of ref's snapshots.
func (e *exports) view(ctx context.Context, ref cache.Ref) (string, func() error, error) {
	root, release, err := e.st.snapshots.View(ctx, ref.SnapshotIDs())
	if err != nil {
		return "", nil, fmt.Errorf("exporting filesystem: %w", err)
	}
	return root, release, nil
}

// filesystem writes the final filesystem (type=local or type=tar) from a read-only
// view of the result's snapshots; with several platforms, each platform's under its
// own directory (linux_amd64/ ...), as buildx does.
func (e *exports) filesystem(ctx context.Context, out Output) (err error) {
	opts := rootfs.Options{Epoch: e.epoch}
	if len(e.builds) > 1 {
		return e.platformFilesystems(ctx, out, opts)
	}
	root, release, err := e.view(ctx, e.builds[0].final)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := release(); err == nil {
			err = rerr
		}
	}()
	switch {
	case out.Type == "local":
		if err := rootfs.WriteDir(ctx, root, out.Dest, opts); err != nil {
			return err
		}
		e.p.Printf("exported filesystem to %s", out.Dest)
	case out.Dest == "-":
		if err := rootfs.WriteTar(ctx, root, exporter.CancelWriter(ctx, e.stdout), opts); err != nil {
			return fmt.Errorf("exporting filesystem tar to standard output: %w", err)
		}
		e.p.Printf("exported filesystem tar to standard output")
	default:
		err := exporter.WriteFile(ctx, out.Dest, func(f *os.File) error {
			return rootfs.WriteTar(ctx, root, exporter.CancelWriter(ctx, f), opts)
		})
		if err != nil {
			return fmt.Errorf("exporting filesystem tar to %s: %w", out.Dest, err)
		}
		e.p.Printf("exported filesystem tar to %s", out.Dest)
	}
	return nil
}

func (e *exports) platformFilesystems(ctx context.Context, out Output, opts rootfs.Options) error {
	switch {
	case out.Type == "local":
		if err := platformDirs(ctx, out.Dest, e.builds, e.view, opts); err != nil {
			return err
		}
		e.p.Printf("exported %d platforms' filesystems to %s", len(e.builds), out.Dest)
	case out.Dest == "-":
		if err := platformTar(ctx, exporter.CancelWriter(ctx, e.stdout), e.builds, e.view, opts); err != nil {
			return fmt.Errorf("exporting filesystem tar to standard output: %w", err)
		}
		e.p.Printf("exported %d platforms' filesystems as a tar to standard output", len(e.builds))
	default:
		err := exporter.WriteFile(ctx, out.Dest, func(f *os.File) error {
			return platformTar(ctx, exporter.CancelWriter(ctx, f), e.builds, e.view, opts)
		})
		if err != nil {
			return fmt.Errorf("exporting filesystem tar to %s: %w", out.Dest, err)
		}
		e.p.Printf("exported %d platforms' filesystems as a tar to %s", len(e.builds), out.Dest)
	}
	return nil
}

// manifestLike is what image manifests and indexes both answer.
type manifestLike interface {
	Digest() (v1.Hash, error)
	MediaType() (types.MediaType, error)
	Size() (int64, error)
}

// describeIndex reads what metadata reports of a multi-platform index named names: its
// digest is the image's (containerimage.digest); it has no single config.
func describeIndex(idx v1.ImageIndex, names []string) (metadata, error) {
	return describeManifest(idx, names)
}

// describe reads what metadata reports of img, named names.
func describe(img v1.Image, names []string) (metadata, error) {
	md, err := describeManifest(img, names)
	if err != nil {
		return md, err
	}
	md.configDigest, err = img.ConfigName()
	return md, err
}

func describeManifest(m manifestLike, names []string) (metadata, error) {
	var md metadata
	var err error
	if md.manifestDigest, err = m.Digest(); err != nil {
		return md, err
	}
	if md.mediaType, err = m.MediaType(); err != nil {
		return md, err
	}
	if md.size, err = m.Size(); err != nil {
		return md, err
	}
	for _, n := range names {
		norm, err := registry.Normalize(n)
		if err != nil {
			return md, err
		}
		if !slices.Contains(md.names, norm) {
			md.names = append(md.names, norm)
		}
	}
	return md, nil
}

// writeMetadata writes --metadata-file (BuildKit's exporter response keys) and
// --iidfile (the image ID, which is the config digest, as docker build writes it).
// Each is replaced atomically.
func writeMetadata(metadataFile, iidFile string, md metadata) error {
	if metadataFile != "" {
		m := map[string]any{}
		if md.image {
			m["containerimage.digest"] = md.manifestDigest.String()
			if md.configDigest != (v1.Hash{}) {
				m["containerimage.config.digest"] = md.configDigest.String()
			}
			m["containerimage.descriptor"] = v1.Descriptor{MediaType: md.mediaType, Digest: md.manifestDigest, Size: md.size}
			if len(md.names) > 0 {
				m["image.name"] = strings.Join(md.names, ",")
			}
		}
		dt, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return err
		}
		if err := cache.WriteFileAtomic(metadataFile, append(dt, '\n')); err != nil {
			return fmt.Errorf("writing --metadata-file: %w", err)
		}
	}
	if iidFile != "" {
		// As buildx: the image ID is the config digest, or for a multi-platform index
		// (which has no single config) the index digest.
		id := md.configDigest
		if id == (v1.Hash{}) {
			id = md.manifestDigest
		}
		if err := cache.WriteFileAtomic(iidFile, []byte(id.String())); err != nil {
			return fmt.Errorf("writing --iidfile: %w", err)
		}
	}
	return nil
}
