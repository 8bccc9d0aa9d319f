package llb

// Op is one operation of the graph. The set is sealed: SourceOp, ExecOp and FileOp.
type Op interface {
	// Kind names the op type in encodings ("source", "exec", "file").
	Kind() string
	isOp()
}

// Source identifiers understood by the solver.
const (
	// ImageScheme prefixes a registry image reference, normalised and pinned by
	// digest when the frontend could resolve it: docker-image://docker.io/library/busybox:latest@sha256:...
	ImageScheme = "docker-image://"
	// LocalScheme prefixes a named local directory supplied by the client (the build context).
	LocalScheme = "local://"
)

// SourceOp brings outside content into the graph: a registry image or a local directory.
// It has no inputs.
type SourceOp struct {
	Identifier string            `json:"identifier"`
	Attrs      map[string]string `json:"attrs,omitempty"`
}

// Network modes of an ExecOp.
const (
	NetworkHost = "host"
	NetworkNone = "none"
)

// ExecOp runs a process in a sandbox whose root filesystem is input Root (or an empty
// filesystem when Root is NoInput). Its result is the root filesystem after the process exited 0.
type ExecOp struct {
	Root    int      `json:"root"`
	Args    []string `json:"args"`
	Env     []string `json:"env,omitempty"`
	Cwd     string   `json:"cwd"`
	User    string   `json:"user,omitempty"`
	Network string   `json:"network"`
}

// NoInput marks an absent input: the op starts from an empty filesystem (FROM scratch).
const NoInput = -1

// FileOp changes a filesystem without running anything from the image: it starts from
// input Base (or empty when NoInput) and applies Actions in order.
type FileOp struct {
	Base    int          `json:"base"`
	Actions []FileAction `json:"actions"`
}

// FileAction is one step of a FileOp; exactly one field is set.
type FileAction struct {
	Mkdir *MkdirAction `json:"mkdir,omitempty"`
	Copy  *CopyAction  `json:"copy,omitempty"`
}

// ChownOpt names an owner as the Dockerfile wrote it: names or numeric ids, resolved
// against the destination's /etc/passwd and /etc/group. Empty fields mean root (0).
type ChownOpt struct {
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
}

// MkdirAction creates a directory (and its parents when MakeParents).
type MkdirAction struct {
	Path        string    `json:"path"`
	Mode        uint32    `json:"mode"`
	MakeParents bool      `json:"makeParents"`
	Chown       *ChownOpt `json:"chown,omitempty"`
}

// CopyAction copies paths from input From (a local directory or a filesystem result)
// into Dest of the op's filesystem, with the Dockerfile COPY semantics:
//   - a source directory copies its contents, not itself;
//   - Dest ending in "/" (or several sources, or a wildcard) means "into directory Dest";
//   - otherwise a single file source is written as Dest;
//   - missing parents of Dest are created (mode 0755);
//   - Src may contain wildcards (filepath.Match syntax) when AllowWildcard;
//   - Chown overrides the owner of every copied entry; Mode (if non-nil) its permission bits.
//
// Src paths are relative to the root of From; Dest is absolute in the op's filesystem.
type CopyAction struct {
	From          int       `json:"from"`
	Src           []string  `json:"src"`
	Dest          string    `json:"dest"`
	Chown         *ChownOpt `json:"chown,omitempty"`
	Mode          *uint32   `json:"mode,omitempty"`
	AllowWildcard bool      `json:"allowWildcard"`
	// FollowSymlinks makes a symlink named directly in Src copy its target.
	FollowSymlinks bool `json:"followSymlinks"`
}

func (SourceOp) Kind() string { return "source" }
func (ExecOp) Kind() string   { return "exec" }
func (FileOp) Kind() string   { return "file" }
func (SourceOp) isOp()        {}
func (ExecOp) isOp()          {}
func (FileOp) isOp()          {}
