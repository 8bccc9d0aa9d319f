package llb

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

// Run runs e on top of s. e.Root is set by Run.
func (s State) Run(e ExecOp, meta Meta) (State, error) {
	var ins []*Vertex
	e.Root = NoInput
	if s.v != nil {
		ins = []*Vertex{s.v}
		e.Root = 0
	}
	v, err := NewVertex(&e, ins, meta)
	return State{v}, err
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
