package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/builderdev/builder/cache"
	"github.com/builderdev/builder/cache/snapshot"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver/ops"
	"github.com/builderdev/builder/worker"
)

// ExitCodeError makes the process exit with Code and print nothing more: the command
// (builder run) passes on the exit status of what it ran, whose output said enough.
type ExitCodeError struct {
	Code int
}

func (e *ExitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

type runOptions struct {
	rm         bool
	env        []string
	network    string
	entrypoint string
	user       string
	workdir    string
	hostname   string
	volumes    []string
}

func newRunCmd(g *globalOptions) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Run an image's command once in the build sandbox",
		Long: `Run an image's entrypoint and command once, in the same sandbox as RUN steps, over an
overlay of the image's layers. Output goes to the terminal and the exit code of the
command is builder's exit code. Nothing the command writes is kept: --rm is always in
effect (there are no containers to list or restart). No stdin is attached.

COMMAND replaces the image's CMD; --entrypoint replaces its ENTRYPOINT and drops CMD.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, err := openStore(ctx, g.root)
			if err != nil {
				return err
			}
			spec, ref, err := st.runSpec(ctx, args[0], args[1:], o, cmd.Flags().Changed("entrypoint"))
			if err != nil {
				return err
			}
			spec.Stdout, spec.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return st.run(ctx, ref, spec)
		},
	}
	// Flags after IMAGE belong to the command.
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.BoolVar(&o.rm, "rm", true, "remove what the command wrote when it exits (always the case)")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set an environment variable (KEY=VALUE, or KEY to pass the host's value)")
	f.StringVar(&o.network, "network", llb.NetworkHost, "network: host (share the host's) or none (loopback only)")
	f.StringVar(&o.entrypoint, "entrypoint", "", "override the image's ENTRYPOINT (and drop its CMD)")
	f.StringVarP(&o.user, "user", "u", "", "user to run as (name|uid[:group|gid])")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the sandbox")
	f.StringVar(&o.hostname, "hostname", "", "hostname inside the sandbox")
	f.StringArrayVarP(&o.volumes, "volume", "v", nil, "bind mount HOST-PATH:CONTAINER-PATH[:ro]")
	return cmd
}

// runSpec resolves image ref and the options into the sandbox's process, docker-style.
func (s *store) runSpec(ctx context.Context, imageRef string, args []string, o runOptions, entrypointSet bool) (worker.ExecSpec, cache.Ref, error) {
	m, err := s.images.Find(ctx, imageRef)
	if err != nil {
		return worker.ExecSpec{}, cache.Ref{}, err
	}
	c, err := s.images.Contents(ctx, m.Record)
	if err != nil {
		return worker.ExecSpec{}, cache.Ref{}, err
	}
	img, err := s.images.Image(ctx, m.Record)
	if err != nil {
		return worker.ExecSpec{}, cache.Ref{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return worker.ExecSpec{}, cache.Ref{}, fmt.Errorf("reading config of %s: %w", imageRef, err)
	}
	argv, err := commandLine(cf.Config, args, o.entrypoint, entrypointSet)
	if err != nil {
		return worker.ExecSpec{}, cache.Ref{}, fmt.Errorf("running %s: %w", imageRef, err)
	}
	spec := worker.ExecSpec{
		Args:     argv,
		Env:      cf.Config.Env,
		Cwd:      cf.Config.WorkingDir,
		User:     cf.Config.User,
		Network:  o.network,
		Hostname: o.hostname,
	}
	for _, e := range o.env {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		spec.Env = llb.WithEnv(spec.Env, e)
	}
	if o.user != "" {
		spec.User = o.user
	}
	if o.workdir != "" {
		spec.Cwd = o.workdir
	}
	switch o.network {
	case llb.NetworkHost, llb.NetworkNone:
	default:
		return worker.ExecSpec{}, cache.Ref{}, fmt.Errorf("--network %q: want host or none", o.network)
	}
	for _, v := range o.volumes {
		mnt, err := parseVolume(v)
		if err != nil {
			return worker.ExecSpec{}, cache.Ref{}, err
		}
		spec.Mounts = append(spec.Mounts, mnt)
	}
	for _, l := range c.Layers {
		if l.DiffID == "" {
			return worker.ExecSpec{}, cache.Ref{}, fmt.Errorf("image %s: layer %s has no diff id in the config", imageRef, l.Digest)
		}
	}
	return spec, cache.Ref{Layers: c.Layers}, nil
}

// commandLine is docker's rule: ENTRYPOINT + CMD, COMMAND replacing CMD, and an
// --entrypoint replacing ENTRYPOINT and dropping the image's CMD.
func commandLine(c v1.Config, args []string, entrypoint string, entrypointSet bool) ([]string, error) {
	ep, cmd := c.Entrypoint, c.Cmd
	if entrypointSet {
		ep, cmd = nil, nil
		if entrypoint != "" {
			ep = []string{entrypoint}
		}
	}
	if len(args) > 0 {
		cmd = args
	}
	argv := append(append([]string{}, ep...), cmd...)
	if len(argv) == 0 {
		return nil, errors.New("no command specified: the image has no ENTRYPOINT or CMD")
	}
	return argv, nil
}

func parseVolume(v string) (worker.Mount, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !filepath.IsAbs(parts[1]) {
		return worker.Mount{}, fmt.Errorf("--volume %q: want HOST-PATH:CONTAINER-PATH[:ro|rw] with an absolute container path", v)
	}
	src, err := filepath.Abs(parts[0])
	if err != nil {
		return worker.Mount{}, err
	}
	if _, err := os.Stat(src); err != nil {
		return worker.Mount{}, fmt.Errorf("--volume %q: %w", v, err)
	}
	m := worker.Mount{Type: worker.MountBind, Source: src, Target: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return worker.Mount{}, fmt.Errorf("--volume %q: unknown option %q", v, parts[2])
		}
	}
	return m, nil
}

// run runs spec over an overlay of ref's layers and the init layer; the overlay's upper
// dir is discarded afterwards. A non-zero exit becomes an *ExitCodeError.
func (s *store) run(ctx context.Context, ref cache.Ref, spec worker.ExecSpec) error {
	// Images loaded, imported or pulled without a build may have no snapshots yet:
	// extract them the way a build realizes its inputs, checking each diff id.
	if err := ops.Realize(ctx, ops.Deps{Content: s.content, Snapshots: s.snapshots}, ref); err != nil {
		return err
	}
	a, err := s.snapshots.Prepare(ctx, ref.SnapshotIDs(), snapshot.WithInitLayer())
	if err != nil {
		return err
	}
	defer a.Discard(ctx)
	spec.Rootfs = a.Root()
	err = s.exec.Run(ctx, spec)
	var xe *worker.ExitError
	if errors.As(err, &xe) {
		return &ExitCodeError{Code: xe.Code}
	}
	return err
}
