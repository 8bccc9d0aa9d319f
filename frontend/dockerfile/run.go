package dockerfile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/builderdev/builder/llb"
)

func (c *converter) dispatchRun(s *stage, r *instructions.RunCommand) error {
	if len(r.Files) > 0 {
		return withWord("<<"+r.Files[0].Name, fmt.Errorf("heredocs: %w", errNotSupported))
	}
	for _, f := range r.FlagsUsed {
		if f != "network" {
			return withWord("--"+f, errNotSupported)
		}
	}
	network := c.opt.Network
	switch instructions.GetNetwork(r) {
	case instructions.NetworkNone:
		network = llb.NetworkNone
	case instructions.NetworkHost:
		network = llb.NetworkHost
	}
	args := r.CmdLine
	if r.PrependShell {
		args = withShell(s.img.Config.Shell, args)
	}
	if len(args) == 0 {
		return errors.New("no command to run")
	}
	env := shell.EnvsFromSlice(s.env)
	st, err := s.state.Run(llb.ExecOp{
		Args:    args,
		Env:     llb.SortedEnv(s.env),
		Cwd:     workdir(s),
		User:    s.img.Config.User,
		Network: network,
	}, c.meta(s.describe(c.display(r.String(), env)), r.Location()))
	if err != nil {
		return err
	}
	s.state = st
	s.commit("RUN "+runCommandString(args, s.args, env)+" # buildkit", st.Vertex().Digest())
	return nil
}

// runCommandString is RUN's history entry: build args in scope come first as
// "|N K=V ...", as Docker does, so two builds with other args do not look the same.
func runCommandString(args []string, buildArgs []instructions.KeyValuePairOptional, env shell.EnvGetter) string {
	var kvs []string
	at := map[string]int{}
	for _, a := range buildArgs {
		v, ok := env.Get(a.Key)
		if !ok {
			v = a.ValueString()
		}
		if i, ok := at[a.Key]; ok {
			kvs[i] = a.Key + "=" + v
			continue
		}
		at[a.Key] = len(kvs)
		kvs = append(kvs, a.Key+"="+v)
	}
	if len(kvs) > 0 {
		kvs = append([]string{fmt.Sprintf("|%d", len(kvs))}, kvs...)
	}
	return strings.Join(append(kvs, args...), " ")
}
