package cli

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/exporter/rootfs"
	"github.com/builderdev/builder/frontend/dockerfile"
	"github.com/builderdev/builder/frontend/platform"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/worker/emulation"
)

// binfmtDirEnv points the emulation check at another binfmt_misc directory. It exists
// for tests, which simulate a host without qemu with an empty directory, and for hosts
// that mount binfmt_misc elsewhere.
const binfmtDirEnv = "BUILDER_BINFMT_DIR"

// parsePlatforms reads --platform values (comma-separated, repeatable); none means
// the host platform.
func parsePlatforms(values []string) ([]ocispec.Platform, error) {
	ps, err := platform.ParseList(values)
	if err != nil {
		return nil, fmt.Errorf("--platform: %w", err)
	}
	if len(ps) == 0 {
		return []ocispec.Platform{platform.Host()}, nil
	}
	return ps, nil
}

func formatPlatforms(ps []ocispec.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = platform.Format(p)
	}
	return strings.Join(s, ",")
}

// checkPlatformOutputs refuses, before anything is built, outputs that cannot take
// what the platforms make: the local image store and a docker archive hold one image
// per name, not a multi-platform index (buildx: "docker exporter does not currently
// support exporting manifest lists"); index annotations need an index.
func checkPlatformOutputs(platforms []ocispec.Platform, tags []string, outputs []Output) error {
	if len(platforms) < 2 {
		for _, o := range outputs {
			if len(o.IndexAnnotations) > 0 || len(o.IndexDescriptorAnnotations) > 0 {
				return fmt.Errorf("output type=%s: index annotations not supported for single platform export", o.Type)
			}
		}
		return nil
	}
	list := formatPlatforms(platforms)
	instead := "push it with --output type=image,name=REF,push=true or write it with --output type=oci,dest=PATH"
	if len(tags) > 0 {
		return fmt.Errorf("-t %s: the local image store cannot hold a multi-platform image (--platform %s); %s, or build one platform at a time", tags[0], list, instead)
	}
	for _, o := range outputs {
		switch {
		case o.Type == "docker":
			return fmt.Errorf("--output type=docker: a docker archive cannot hold a multi-platform image (--platform %s); use type=oci or type=image,push=true, or build one platform at a time", list)
		case o.Type == "image" && !o.Push:
			return fmt.Errorf("--output type=image,name=%s: without push=true the image goes to the local image store, which cannot hold a multi-platform image (--platform %s); add push=true, or build one platform at a time", strings.Join(o.Names, ","), list)
		}
	}
	return nil
}

// describePrefix is the "[stage 2/3] " start of a progress description.
var describePrefix = regexp.MustCompile(`^\[[^\]]*\] `)

// checkEmulation fails, before anything runs, when a RUN step of some platform's
// graph needs a platform this host cannot run (no qemu-user-static registered). The
// error names the platform, the Dockerfile line of the first such RUN and the fix.
func checkEmulation(builds []*platformBuild, binfmtDir string) error {
	host := platform.Host()
	verdicts := map[string]error{}
	var first *llb.Vertex
	var firstErr error
	for _, b := range builds {
		if b.out == nil {
			continue
		}
		_ = llb.Walk(b.out, func(v *llb.Vertex) error {
			p, ok := b.fe.RunPlatforms[v.Digest()]
			if !ok {
				return nil
			}
			k := platform.Format(p)
			err, seen := verdicts[k]
			if !seen {
				err = emulation.Check(binfmtDir, host, p)
				verdicts[k] = err
			}
			if err != nil && (first == nil || line(v) < line(first)) {
				first, firstErr = v, err
			}
			return nil
		})
	}
	if first == nil {
		return nil
	}
	m := first.Meta()
	// One line, as the step's progress line shows it without its "[stage 2/3] " prefix.
	text := strings.Join(strings.Fields(describePrefix.ReplaceAllString(m.Description, "")), " ")
	e := &dockerfile.Error{Instruction: text, Err: firstErr}
	if m.Location != nil {
		e.File, e.Line, e.EndLine = m.Location.File, m.Location.StartLine, m.Location.EndLine
	}
	return e
}

func line(v *llb.Vertex) int {
	if l := v.Meta().Location; l != nil {
		return l.StartLine
	}
	return int(^uint(0) >> 1)
}

// platformTar writes one tar holding each platform's filesystem under its own
// directory (linux_amd64/, linux_arm64/), as buildx lays out a multi-platform
// type=tar output.
func platformTar(ctx context.Context, w io.Writer, builds []*platformBuild, view func(context.Context, cache.Ref) (string, func() error, error), opts rootfs.Options) error {
	tw := tar.NewWriter(w)
	for _, b := range builds {
		prefix := platform.Dir(b.platform) + "/"
		mtime := time.Now()
		if opts.Epoch != nil {
			mtime = *opts.Epoch
		}
		if err := tw.WriteHeader(&tar.Header{Name: prefix, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime.Truncate(time.Second)}); err != nil {
			return err
		}
		root, release, err := view(ctx, b.final)
		if err != nil {
			return err
		}
		err = prefixedTar(ctx, tw, prefix, func(w io.Writer) error { return rootfs.WriteTar(ctx, root, w, opts) })
		if rerr := release(); err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", platform.Format(b.platform), err)
		}
	}
	return tw.Close()
}

// prefixedTar copies the entries of the tar write produces into tw, each under prefix
// (hard link targets too, since they name entries of the archive).
func prefixedTar(ctx context.Context, tw *tar.Writer, prefix string, write func(io.Writer) error) error {
	pr, pw := io.Pipe()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := write(pw)
		pw.CloseWithError(err)
		return err
	})
	g.Go(func() error {
		tr := tar.NewReader(pr)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				// Drain what follows the end marker so the writer never blocks.
				_, err = io.Copy(io.Discard, pr)
				return err
			}
			if err != nil {
				pr.CloseWithError(err)
				return err
			}
			if err := ctx.Err(); err != nil {
				pr.CloseWithError(err)
				return err
			}
			hdr.Name = prefix + hdr.Name
			if hdr.Typeflag == tar.TypeLink {
				hdr.Linkname = prefix + hdr.Linkname
			}
			if err := tw.WriteHeader(hdr); err != nil {
				pr.CloseWithError(err)
				return err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				pr.CloseWithError(err)
				return err
			}
		}
	})
	return g.Wait()
}

// platformDirs writes each platform's filesystem to DEST/linux_amd64 and so on.
func platformDirs(ctx context.Context, dest string, builds []*platformBuild, view func(context.Context, cache.Ref) (string, func() error, error), opts rootfs.Options) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("writing filesystem to %s: %w", dest, err)
	}
	for _, b := range builds {
		root, release, err := view(ctx, b.final)
		if err != nil {
			return err
		}
		err = rootfs.WriteDir(ctx, root, filepath.Join(dest, platform.Dir(b.platform)), opts)
		if rerr := release(); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}
