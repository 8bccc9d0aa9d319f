//go:build linux

package runc

import (
	"fmt"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
)

// resolveUser resolves a "user[:group]" spec (names or numbers) against the rootfs's
// /etc/passwd and /etc/group, including the user's supplementary groups. Numeric ids
// need no passwd file; an unknown name is an error.
func resolveUser(rootfs, spec string) (*user.ExecUser, error) {
	passwd, err := securejoin.SecureJoin(rootfs, "/etc/passwd")
	if err != nil {
		return nil, fmt.Errorf("resolving user %q: %w", spec, err)
	}
	group, err := securejoin.SecureJoin(rootfs, "/etc/group")
	if err != nil {
		return nil, fmt.Errorf("resolving user %q: %w", spec, err)
	}
	u, err := user.GetExecUserPath(spec, &user.ExecUser{Home: "/"}, passwd, group)
	if err != nil {
		return nil, fmt.Errorf("resolving user %q: %w", spec, err)
	}
	return u, nil
}
