package diff

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	paxXattrPrefix   = "SCHILY.xattr."
	overlayXattrPref = "trusted.overlay."
	opaqueXattr      = "trusted.overlay.opaque"

	whiteoutPrefix = ".wh."
	// whiteoutMetaPrefix marks names reserved by the OCI spec for special entries
	// (aufs left .wh..wh.plnk and friends in old images); only the opaque marker means
	// anything to us.
	whiteoutMetaPrefix = ".wh..wh."
	whiteoutOpaqueDir  = ".wh..wh..opq"
)

// listXattrs returns the extended attributes of path (not following symlinks).
func listXattrs(path string) (map[string]string, error) {
	names, err := llistxattr(path)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	out := make(map[string]string, len(names))
	for _, name := range names {
		v, err := lgetxattr(path, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed between list and get
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, path, err)
		}
		out[name] = v
	}
	return out, nil
}

func llistxattr(path string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Llistxattr(path, nil)
			if err != nil {
				return nil, fmt.Errorf("listing xattrs of %s: %w", path, err)
			}
			buf = make([]byte, sz+64)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing xattrs of %s: %w", path, err)
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func lgetxattr(path, name string) (string, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Lgetxattr(path, name, nil)
			if err != nil {
				return "", err
			}
			buf = make([]byte, sz+64)
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
}
