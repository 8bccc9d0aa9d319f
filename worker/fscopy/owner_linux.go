package fscopy

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
)

// ids is a resolved owner.
type ids struct{ uid, gid int }

// resolveOwner resolves o against root's /etc/passwd and /etc/group, read through
// securejoin so that an image's "etc" symlink cannot point at the host. As in BuildKit,
// a name that is not there (or a missing file) is not an error: the uid stays 0 and an
// unknown group leaves the user's primary group.
func resolveOwner(root string, o *Owner) (ids, error) {
	var id ids
	switch n, numeric := parseID(o.User); {
	case o.User == "":
	case numeric:
		id = ids{uid: n, gid: n}
	default:
		var found []user.User
		err := readDBFile(root, "/etc/passwd", func(f *os.File) (err error) {
			found, err = user.ParsePasswdFilter(f, func(u user.User) bool { return u.Name == o.User })
			return err
		})
		if err != nil {
			return ids{}, fmt.Errorf("resolving user %q: %w", o.User, err)
		}
		if len(found) > 0 {
			id = ids{uid: found[0].Uid, gid: found[0].Gid}
		}
	}
	switch n, numeric := parseID(o.Group); {
	case o.Group == "":
	case numeric:
		id.gid = n
	default:
		var found []user.Group
		err := readDBFile(root, "/etc/group", func(f *os.File) (err error) {
			found, err = user.ParseGroupFilter(f, func(g user.Group) bool { return g.Name == o.Group })
			return err
		})
		if err != nil {
			return ids{}, fmt.Errorf("resolving group %q: %w", o.Group, err)
		}
		if len(found) > 0 {
			id.gid = found[0].Gid
		}
	}
	return id, nil
}

func parseID(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}

func readDBFile(root, name string, parse func(*os.File) error) error {
	p, err := securejoin.SecureJoin(root, name)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if isNotExist(err) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return parse(f)
}
