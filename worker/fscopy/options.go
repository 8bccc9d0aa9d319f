package fscopy

import (
	"fmt"
	"os"
)

// Owner names an owner as the Dockerfile wrote it (--chown=user:group): names or numeric
// ids, resolved against the destination's /etc/passwd and /etc/group. An empty User means
// uid 0. An empty Group means the user's primary group from /etc/passwd for a name, the
// same number for a numeric uid (BuildKit's rule), and 0 when User is empty too.
type Owner struct {
	User  string
	Group string
}

// CopyOptions describes one COPY from a source root into a destination root.
type CopyOptions struct {
	// Src are paths relative to the source root ("/" is the root itself). They may
	// contain filepath.Match wildcards when AllowWildcard is set.
	Src []string
	// Dest is an absolute path inside the destination root; a trailing "/" means
	// "into directory Dest".
	Dest string
	// Chown, when set, owns every copied entry and every directory the copy creates.
	Chown *Owner
	// Mode (--chmod), when set, replaces the permission bits of every copied entry,
	// files and directories alike. Special bits may be given either as os.ModeSetuid,
	// os.ModeSetgid, os.ModeSticky or as the raw 04000, 02000, 01000 bits.
	Mode          *os.FileMode
	AllowWildcard bool
	// FollowSymlinks makes a symlink named directly in Src (or matched by a wildcard)
	// copy its target. Symlinks found inside a copied directory are always copied as
	// symlinks.
	FollowSymlinks bool
	// PreserveOwner keeps the source entries' uid/gid when Chown is nil: COPY --from
	// another stage or image. Without it (build context) copies are owned by 0:0.
	PreserveOwner bool
	// SourceName names the source root in NotFoundError ("build context",
	// "stage builder"); empty leaves it out.
	SourceName string
	// Ignore are .dockerignore patterns (moby/patternmatcher) of the source root, with
	// "!" exceptions: matching paths behave as if they did not exist (a source naming
	// only ignored paths is a NotFoundError).
	Ignore []string
	// Exclude are COPY --exclude patterns (patternmatcher syntax, "!" exceptions and
	// "**" included). As in BuildKit's copy they are matched against each entry's path
	// relative to the source being copied: for a directory source (or each directory a
	// wildcard matches) its entries, "*.go" meaning the .go files at its top; for a
	// --parents source the paths kept under Dest. The source itself is never excluded.
	// Matching entries (and everything under a matching directory, unless an exception
	// re-includes it) are skipped; a source left empty is not an error.
	Exclude []string
	// Parents (COPY --parents) keeps each source's directory path below the source root
	// under Dest; a "/./" in a source path marks where the kept part starts. As in
	// BuildKit, Dest is always a directory then, and a source with wildcards may match
	// nothing.
	Parents bool
	// AutoExtract (ADD) unpacks a source file that is a tar archive, plain or compressed
	// with gzip, bzip2, xz or zstd (detected by content, not name), into Dest as a
	// directory; other files are copied as usual. Entries keep their owners and modes
	// unless Chown/Mode are set; paths cannot leave Dest. Files inside a copied
	// directory are never unpacked.
	AutoExtract bool
}

// MkfileOptions describes one file with inline content (COPY <<EOF, RUN heredocs).
type MkfileOptions struct {
	// Path is absolute inside the destination root; missing parents are created 0755
	// and owned like the file.
	Path string
	Data []byte
	Mode os.FileMode
	// Chown owns the file; nil means 0:0.
	Chown *Owner
}

// MkdirOptions describes one mkdir of a FileOp.
type MkdirOptions struct {
	// Path is absolute inside the destination root.
	Path string
	// Mode are the permission bits of the created directories (parents included, as
	// BuildKit does); special bits as in CopyOptions.Mode.
	Mode        os.FileMode
	MakeParents bool
	// Chown owns the created directories; nil means 0:0.
	Chown *Owner
}

// NotFoundError reports a source that matches nothing: a missing path or a wildcard
// without a match. Path is the source as the Dockerfile wrote it.
type NotFoundError struct {
	Path   string
	Source string
}

func (e *NotFoundError) Error() string {
	if e.Source == "" {
		return fmt.Sprintf("%q: not found", e.Path)
	}
	return fmt.Sprintf("%q: not found in %s", e.Path, e.Source)
}

// ChecksumOptions selects the sources to hash, as CopyOptions does for Copy.
type ChecksumOptions struct {
	Src            []string
	AllowWildcard  bool
	FollowSymlinks bool
	// IncludeOwner hashes uid/gid. Set it when Copy would keep them (PreserveOwner
	// without Chown); leave it off for build-context copies, whose owner is not part of
	// the result, so that checkouts by different users share cache keys.
	IncludeOwner bool
	// SourceName, Ignore, Exclude and Parents as in CopyOptions: the checksum covers
	// exactly what Copy would read.
	SourceName string
	Ignore     []string
	Exclude    []string
	Parents    bool
}

// permBits converts m to the raw mode bits chmod(2) takes, accepting the special bits in
// both their os.FileMode and their raw octal spelling.
func permBits(m os.FileMode) uint32 {
	p := uint32(m & os.ModePerm)
	raw := uint32(m) & 0o7000
	if m&os.ModeSetuid != 0 {
		raw |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		raw |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		raw |= 0o1000
	}
	return p | raw
}
