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
	// HTTPScheme and HTTPSScheme identify a file downloaded from a URL (ADD https://...);
	// the identifier is the URL itself.
	HTTPScheme  = "http://"
	HTTPSScheme = "https://"
	// GitScheme prefixes a git repository (ADD git@..., ADD https://...git): the rest is
	// the remote as the user wrote it; attributes carry the ref and options.
	GitScheme = "git://"
	// OCILayoutScheme prefixes an image read from an OCI layout directory on the client:
	// oci-layout:///abs/path@sha256:<manifest digest> (--build-context name=oci-layout://...).
	OCILayoutScheme = "oci-layout://"
)

// Source attributes.
const (
	// AttrLocalExcludes on a local source is a JSON array of .dockerignore patterns
	// (moby/patternmatcher syntax): matching paths do not exist in that source.
	AttrLocalExcludes = "local.excludes"
	// AttrHTTPChecksum pins the digest of a downloaded file (ADD --checksum).
	AttrHTTPChecksum = "http.checksum"
	// AttrHTTPFilename names the downloaded file; default: the URL's last path element.
	AttrHTTPFilename = "http.filename"
	// AttrHTTPPerm is the octal mode of the downloaded file; default 0600.
	AttrHTTPPerm = "http.perm"
	// AttrGitRef is the branch, tag or commit to check out (URL fragment "#ref:subdir").
	AttrGitRef = "git.ref"
	// AttrGitSubdir keeps only that directory of the checkout.
	AttrGitSubdir = "git.subdir"
	// AttrGitKeepDir keeps the .git directory ("true").
	AttrGitKeepDir = "git.keepgitdir"
	// AttrGitChecksum pins the commit the ref must resolve to (ADD --checksum).
	AttrGitChecksum = "git.checksum"
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
	// Mounts are RUN --mount mounts, in the order written. They are never part of the
	// result: only changes under Root outside every mount target make the layer.
	Mounts []Mount `json:"mounts,omitempty"`
	// ProxyEnv holds the predefined proxy build args (HTTP_PROXY and friends) given
	// with --build-arg but not declared with ARG. As in BuildKit they reach the process
	// but not the cache key: a proxy changes how the network is reached, not what a
	// step makes. Hence it is left out of the encoding and the digest.
	ProxyEnv []string `json:"-"`
	// SourceDateEpoch (SOURCE_DATE_EPOCH, Unix seconds) clamps the modification times
	// in the layer the op makes, so rebuilding it gives the same bytes. It is part of
	// the digest: a step with an epoch and one without make different layers.
	SourceDateEpoch *int64 `json:"sourceDateEpoch,omitempty"`
}

// Mount types of an ExecOp.
const (
	MountBind   = "bind"
	MountCache  = "cache"
	MountTmpfs  = "tmpfs"
	MountSecret = "secret"
	MountSSH    = "ssh"
)

// Cache mount sharing modes.
const (
	SharingShared  = "shared"
	SharingPrivate = "private"
	SharingLocked  = "locked"
)

// Mount is one RUN --mount. Fields not meaningful for Type stay zero.
type Mount struct {
	Type string `json:"type"`
	// Target is the absolute path inside the sandbox.
	Target string `json:"target"`
	// Input is the vertex input mounted (bind) or seeding an empty cache (cache, with
	// from=); NoInput for none (an empty dir for bind). Source is the path inside it.
	Input  int    `json:"input"`
	Source string `json:"source,omitempty"`
	// ReadWrite lets a bind mount be written; the writes are thrown away afterwards.
	ReadWrite bool `json:"readWrite,omitempty"`
	// CacheID names a cache mount (default: Target); Sharing is one of Sharing*.
	CacheID string `json:"cacheID,omitempty"`
	Sharing string `json:"sharing,omitempty"`
	// Mode, UID and GID apply to a new cache directory, a secret file or the ssh socket.
	Mode *uint32 `json:"mode,omitempty"`
	UID  *uint32 `json:"uid,omitempty"`
	GID  *uint32 `json:"gid,omitempty"`
	// SecretID / SSHID name the secret or ssh agent given to the build (--secret id=,
	// --ssh id). Required makes a missing one an error instead of skipping the mount.
	SecretID string `json:"secretID,omitempty"`
	SSHID    string `json:"sshID,omitempty"`
	Required bool   `json:"required,omitempty"`
	// Env exposes a secret as this environment variable (and as a file only when
	// Target is also set).
	Env string `json:"env,omitempty"`
	// Size limits a tmpfs in bytes; 0 is the kernel default.
	Size int64 `json:"size,omitempty"`
}

// NoInput marks an absent input: the op starts from an empty filesystem (FROM scratch).
const NoInput = -1

// FileOp changes a filesystem without running anything from the image: it starts from
// input Base (or empty when NoInput) and applies Actions in order.
type FileOp struct {
	Base    int          `json:"base"`
	Actions []FileAction `json:"actions"`
	// SourceDateEpoch is as in ExecOp.
	SourceDateEpoch *int64 `json:"sourceDateEpoch,omitempty"`
}

// FileAction is one step of a FileOp; exactly one field is set.
type FileAction struct {
	Mkdir  *MkdirAction  `json:"mkdir,omitempty"`
	Copy   *CopyAction   `json:"copy,omitempty"`
	Mkfile *MkfileAction `json:"mkfile,omitempty"`
}

// MkfileAction writes a file with inline content (heredoc sources of COPY and RUN).
// Missing parents are created 0755 (owned like the file).
type MkfileAction struct {
	Path  string    `json:"path"`
	Data  []byte    `json:"data"`
	Mode  uint32    `json:"mode"`
	Chown *ChownOpt `json:"chown,omitempty"`
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
	// Exclude are patternmatcher patterns (COPY --exclude), matched, as in BuildKit,
	// against paths relative to each source path being copied (after wildcard
	// expansion); matching entries below it are not copied.
	Exclude []string `json:"exclude,omitempty"`
	// Parents keeps each source's path below the source root (COPY --parents); a "/./"
	// in a source marks where the kept part starts.
	Parents bool `json:"parents,omitempty"`
	// AutoExtract unpacks a source file that is a tar archive (plain, gzip, bzip2, xz or
	// zstd) into Dest instead of copying it (ADD of a local archive).
	AutoExtract bool `json:"autoExtract,omitempty"`
}

func (SourceOp) Kind() string { return "source" }
func (ExecOp) Kind() string   { return "exec" }
func (FileOp) Kind() string   { return "file" }
func (SourceOp) isOp()        {}
func (ExecOp) isOp()          {}
func (FileOp) isOp()          {}
