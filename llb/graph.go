package llb

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// encodingVersion versions the digest encoding: bump it when an op's meaning changes so
// old cache keys stop matching.
const encodingVersion = 1

// SourceLocation points at the lines of the file a vertex came from.
type SourceLocation struct {
	File      string `json:"file"`
	StartLine int    `json:"startLine"`
	EndLine   int    `json:"endLine"`
}

// Meta describes a vertex for people: progress lines and errors. It is not part of the digest.
type Meta struct {
	// Description is what progress shows, e.g. "[build 2/4] RUN make".
	Description string `json:"description,omitempty"`
	// Location is the Dockerfile range that produced the vertex, if any.
	Location *SourceLocation `json:"location,omitempty"`
	// IgnoreCache forces the vertex to run even when its key is cached (--no-cache).
	IgnoreCache bool `json:"ignoreCache,omitempty"`
}

// Vertex is one node of the graph. Vertices are immutable once made by NewVertex.
type Vertex struct {
	digest digest.Digest
	op     Op
	inputs []*Vertex
	meta   Meta
}

// NewVertex makes a vertex for op with the given inputs. Op fields that index inputs
// (ExecOp.Root, Mount.Input, FileOp.Base, CopyAction.From) refer to positions in inputs.
func NewVertex(op Op, inputs []*Vertex, meta Meta) (*Vertex, error) {
	if err := checkIndexes(op, len(inputs)); err != nil {
		return nil, err
	}
	v := &Vertex{op: op, inputs: append([]*Vertex(nil), inputs...), meta: meta}
	ins := make([]digest.Digest, len(inputs))
	for i, in := range inputs {
		if in == nil {
			return nil, fmt.Errorf("input %d of %s op is nil", i, op.Kind())
		}
		ins[i] = in.digest
	}
	dt, err := json.Marshal(struct {
		V      int             `json:"v"`
		Kind   string          `json:"kind"`
		Op     Op              `json:"op"`
		Inputs []digest.Digest `json:"inputs"`
	}{encodingVersion, op.Kind(), op, ins})
	if err != nil {
		return nil, fmt.Errorf("encoding %s op: %w", op.Kind(), err)
	}
	v.digest = digest.FromBytes(dt)
	return v, nil
}

func checkIndexes(op Op, n int) error {
	ok := func(i int, what string) error {
		if i == NoInput || (i >= 0 && i < n) {
			return nil
		}
		return fmt.Errorf("%s op: %s refers to input %d of %d", op.Kind(), what, i, n)
	}
	switch o := op.(type) {
	case *SourceOp:
		if n != 0 {
			return fmt.Errorf("source op takes no inputs, got %d", n)
		}
		if o.Identifier == "" {
			return fmt.Errorf("source op without identifier")
		}
	case *ExecOp:
		if len(o.Args) == 0 {
			return fmt.Errorf("exec op without args")
		}
		if err := ok(o.Root, "root"); err != nil {
			return err
		}
		for _, m := range o.Mounts {
			if err := ok(m.Input, "mount "+m.Target); err != nil {
				return err
			}
		}
	case *FileOp:
		if err := ok(o.Base, "base"); err != nil {
			return err
		}
		for _, a := range o.Actions {
			switch {
			case a.Copy != nil && a.Mkdir == nil && a.Mkfile == nil:
				if a.Copy.From == NoInput {
					return fmt.Errorf("file op: copy needs a source input")
				}
				if err := ok(a.Copy.From, "copy source"); err != nil {
					return err
				}
			case a.Mkdir != nil && a.Copy == nil && a.Mkfile == nil:
			case a.Mkfile != nil && a.Copy == nil && a.Mkdir == nil:
			default:
				return fmt.Errorf("file op: each action needs exactly one of mkdir, mkfile, copy")
			}
		}
	default:
		return fmt.Errorf("unknown op type %T", op)
	}
	return nil
}

// Digest names the vertex by its op and inputs.
func (v *Vertex) Digest() digest.Digest { return v.digest }

// Op returns the vertex's operation. Callers must not modify it.
func (v *Vertex) Op() Op { return v.op }

// Inputs returns the vertices this one reads.
func (v *Vertex) Inputs() []*Vertex { return v.inputs }

// Meta returns the vertex's description and source location.
func (v *Vertex) Meta() Meta { return v.meta }

// WithMeta returns a copy of v with other metadata and the same digest.
func (v *Vertex) WithMeta(m Meta) *Vertex {
	c := *v
	c.meta = m
	return &c
}

// Definition is a marshalled graph: vertices in topological order (inputs first) and the
// output vertex, last. It is what the solver takes and what --print-llb prints.
type Definition struct {
	Version  int           `json:"version"`
	Vertices []VertexDef   `json:"vertices"`
	Output   digest.Digest `json:"output"`
	byDigest map[digest.Digest]int
}

// VertexDef is the serialised form of a Vertex.
type VertexDef struct {
	Digest digest.Digest   `json:"digest"`
	Kind   string          `json:"kind"`
	Op     json.RawMessage `json:"op"`
	Inputs []digest.Digest `json:"inputs,omitempty"`
	Meta   Meta            `json:"meta"`
}

// Marshal walks the graph below out and returns its definition. Vertices reached twice
// (the same digest) appear once; the first one's Meta wins.
func Marshal(out *Vertex) (*Definition, error) {
	if out == nil {
		return nil, fmt.Errorf("marshalling an empty graph (scratch has no vertex)")
	}
	def := &Definition{Version: encodingVersion, Output: out.digest}
	err := Walk(out, func(v *Vertex) error {
		dt, err := json.Marshal(v.op)
		if err != nil {
			return fmt.Errorf("encoding %s op: %w", v.op.Kind(), err)
		}
		vd := VertexDef{Digest: v.digest, Kind: v.op.Kind(), Op: dt, Meta: v.meta}
		for _, in := range v.inputs {
			vd.Inputs = append(vd.Inputs, in.digest)
		}
		def.Vertices = append(def.Vertices, vd)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return def, nil
}

// Graph rebuilds the vertices of a definition (for example one read back from JSON),
// checking every digest, and returns the output vertex.
func (d *Definition) Graph() (*Vertex, error) {
	if d.Version != encodingVersion {
		return nil, fmt.Errorf("llb definition version %d, want %d", d.Version, encodingVersion)
	}
	built := map[digest.Digest]*Vertex{}
	for i, vd := range d.Vertices {
		op, err := decodeOp(vd.Kind, vd.Op)
		if err != nil {
			return nil, fmt.Errorf("vertex %d (%s): %w", i, vd.Digest, err)
		}
		var ins []*Vertex
		for _, id := range vd.Inputs {
			in, ok := built[id]
			if !ok {
				return nil, fmt.Errorf("vertex %d (%s): input %s not defined before it", i, vd.Digest, id)
			}
			ins = append(ins, in)
		}
		v, err := NewVertex(op, ins, vd.Meta)
		if err != nil {
			return nil, fmt.Errorf("vertex %d: %w", i, err)
		}
		if v.digest != vd.Digest {
			return nil, fmt.Errorf("vertex %d: digest %s does not match its content (%s)", i, vd.Digest, v.digest)
		}
		built[v.digest] = v
	}
	out, ok := built[d.Output]
	if !ok {
		return nil, fmt.Errorf("output %s is not a vertex of the definition", d.Output)
	}
	return out, nil
}

func decodeOp(kind string, dt []byte) (Op, error) {
	var op Op
	switch kind {
	case "source":
		op = &SourceOp{}
	case "exec":
		op = &ExecOp{}
	case "file":
		op = &FileOp{}
	default:
		return nil, fmt.Errorf("unknown op kind %q", kind)
	}
	if err := json.Unmarshal(dt, op); err != nil {
		return nil, fmt.Errorf("decoding %s op: %w", kind, err)
	}
	return op, nil
}

// Walk calls fn for every vertex below out (inputs before the vertices that read them),
// once per digest, in a deterministic order.
func Walk(out *Vertex, fn func(*Vertex) error) error {
	seen := map[digest.Digest]bool{}
	var visit func(v *Vertex) error
	visit = func(v *Vertex) error {
		if seen[v.digest] {
			return nil
		}
		seen[v.digest] = true
		for _, in := range v.inputs {
			if err := visit(in); err != nil {
				return err
			}
		}
		return fn(v)
	}
	return visit(out)
}

// SortedEnv returns env sorted by key, for callers that want a canonical order.
func SortedEnv(env []string) []string {
	out := append([]string(nil), env...)
	sort.Strings(out)
	return out
}

// WithEnv returns a copy of env with kv ("KEY=value") replacing any earlier KEY, added
// last.
func WithEnv(env []string, kv string) []string {
	k, _, _ := strings.Cut(kv, "=")
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek != k {
			out = append(out, e)
		}
	}
	return append(out, kv)
}
