package registry

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"
)

// dockerHub is the registry name Docker shows for Docker Hub; go-containerregistry
// spells it index.docker.io internally.
const dockerHub = "docker.io"

// Normalize turns a user's image reference into its canonical form the way Docker
// does: "busybox" → "docker.io/library/busybox:latest", "127.0.0.1:5000/x" →
// "127.0.0.1:5000/x:latest". A digest is kept (with the tag, if one was given), and a
// reference with a digest gets no default tag.
func Normalize(ref string) (string, error) {
	n, err := parse(ref)
	if err != nil {
		return "", err
	}
	return n.String(), nil
}

// parsed is a normalised reference split into its parts.
type parsed struct {
	host   string // "docker.io", "127.0.0.1:5000"
	repo   string // "library/busybox"
	tag    string // "" only when dgst is set
	digest digest.Digest
}

// name is host/repo, without tag or digest.
func (p parsed) name() string { return p.host + "/" + p.repo }

func (p parsed) String() string {
	s := p.name()
	if p.tag != "" {
		s += ":" + p.tag
	}
	if p.digest != "" {
		s += "@" + p.digest.String()
	}
	return s
}

// pinned is the reference with its digest replaced by d.
func (p parsed) pinned(d digest.Digest) string {
	p.digest = d
	return p.String()
}

func parse(ref string) (parsed, error) {
	if ref == "" {
		return parsed{}, errors.New("normalizing image reference: empty reference")
	}
	base, dgst, hasDigest := strings.Cut(ref, "@")
	var p parsed
	if hasDigest {
		d, err := digest.Parse(dgst)
		if err != nil {
			return parsed{}, fmt.Errorf("normalizing image reference %q: invalid digest: %w", ref, err)
		}
		p.digest = d
	}
	// A colon after the last slash separates the tag; one before it is a registry port.
	if i := strings.LastIndex(base, ":"); i > strings.LastIndex(base, "/") {
		p.tag = base[i+1:]
		base = base[:i]
	}
	repo, err := name.NewRepository(base)
	if err != nil {
		return parsed{}, fmt.Errorf("normalizing image reference %q: %w", ref, err)
	}
	p.host = repo.RegistryStr()
	if p.host == name.DefaultRegistry {
		p.host = dockerHub
	}
	p.repo = repo.RepositoryStr()
	if p.tag == "" && p.digest == "" {
		p.tag = name.DefaultTag
	}
	if p.tag != "" {
		if _, err := name.NewTag(p.name() + ":" + p.tag); err != nil {
			return parsed{}, fmt.Errorf("normalizing image reference %q: %w", ref, err)
		}
	}
	return p, nil
}
