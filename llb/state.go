package llb

import (
	"errors"
	"fmt"
)

// State is an immutable handle on a filesystem in the graph: either empty (scratch) or the
// output of a vertex. Methods return new States; the zero State is scratch.
type State struct {
	v *Vertex
}

// Scratch is the empty filesystem.
func Scratch() State { return State{} }

// FromVertex wraps a vertex as a State.
func FromVertex(v *Vertex) State { return State{v: v} }

// Vertex returns the vertex behind the state, nil for scratch.
func (s State) Vertex() *Vertex { return s.v }

// IsScratch reports whether the state is the empty filesystem.
func (s State) IsScratch() bool { return s.v == nil }

// Image is a registry image source. ref should be normalised and, when known, pinned by digest.
func Image(ref string, meta Meta) (State, error) {
	v, err := NewVertex(&SourceOp{Identifier: ImageScheme + ref}, nil, meta)
	return State{v}, err
}

// Local is a named local directory supplied at solve time (e.g. "context").
func Local(name string, meta Meta) (State, error) {
	v, err := NewVertex(&SourceOp{Identifier: LocalScheme + name}, nil, meta)
	return State{v}, err
}

// Source is any source op: identifier (with one of the *Scheme prefixes) and attributes.
func Source(identifier string, attrs map[string]string, meta Meta) (State, error) {
	v, err := NewVertex(&SourceOp{Identifier: identifier, Attrs: attrs}, nil, meta)
	return State{v}, err
}

// Run runs e on top of s. e.Root is set by Run; e must have no mounts.
func (s State) Run(e ExecOp, meta Meta) (State, error) {
	if len(e.Mounts) > 0 {
		return State{}, errors.New("exec op with mounts: use RunMounts")
	}
	return s.RunMounts(e, nil, meta)
}

// RunMounts runs e on top of s with e.Mounts; from[i] is what mount i reads (bind
// source, cache seed), Scratch for nothing. Inputs are deduplicated: a state mounted
// twice, or also the root, is one input. e.Root and each Mount.Input are set here.
func (s State) RunMounts(e ExecOp, from []State, meta Meta) (State, error) {
	if len(from) != len(e.Mounts) {
		return State{}, fmt.Errorf("exec op: %d mounts but %d mount sources", len(e.Mounts), len(from))
	}
	var ins []*Vertex
	index := func(st State) int {
		if st.v == nil {
			return NoInput
		}
		for i, v := range ins {
			if v == st.v || v.digest == st.v.digest {
				return i
			}
		}
		ins = append(ins, st.v)
		return len(ins) - 1
	}
	e.Root = index(s)
	e.Mounts = append([]Mount(nil), e.Mounts...)
	for i := range e.Mounts {
		e.Mounts[i].Input = index(from[i])
	}
	v, err := NewVertex(&e, ins, meta)
	return State{v}, err
}

// Mkfile writes a file with inline content in s.
func (s State) Mkfile(a MkfileAction, meta Meta) (State, error) {
	return s.file([]FileAction{{Mkfile: &a}}, nil, meta)
}

// Mkdir creates a directory in s.
func (s State) Mkdir(a MkdirAction, meta Meta) (State, error) {
	return s.file([]FileAction{{Mkdir: &a}}, nil, meta)
}

// Copy copies from src into s; a.From is set by Copy.
func (s State) Copy(src State, a CopyAction, meta Meta) (State, error) {
	if src.v == nil {
		// Copying from scratch copies nothing, but the paths must still exist: keep an
		// explicit empty source so the solver reports the missing path.
		return State{}, errScratchSource
	}
	return s.file([]FileAction{{Copy: &a}}, []*Vertex{src.v}, meta)
}

func (s State) file(actions []FileAction, srcs []*Vertex, meta Meta) (State, error) {
	var ins []*Vertex
	op := &FileOp{Base: NoInput}
	if s.v != nil {
		ins = append(ins, s.v)
		op.Base = 0
	}
	for i := range actions {
		if actions[i].Copy != nil {
			c := *actions[i].Copy
			c.From = len(ins)
			actions[i].Copy = &c
			ins = append(ins, srcs[0])
			srcs = srcs[1:]
		}
	}
	op.Actions = actions
	v, err := NewVertex(op, ins, meta)
	return State{v}, err
}

type scratchSourceError struct{}

func (scratchSourceError) Error() string {
	return "copying from an empty stage (scratch): nothing to copy"
}

var errScratchSource error = scratchSourceError{}
