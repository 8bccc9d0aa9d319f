package fscopy

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// listXattrs returns p's extended attributes (not followed), sorted by name. Overlay's
// own trusted.overlay.* attributes describe the layer store, not the file, and are left
// out.
func listXattrs(p string) ([]string, map[string][]byte, error) {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return nil, nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	var names []string
	vals := map[string][]byte{}
	for _, n := range bytes.Split(buf[:size], []byte{0}) {
		name := string(n)
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		v, err := getXattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		names = append(names, name)
		vals[name] = v
	}
	sort.Strings(names)
	return names, vals, nil
}

func getXattr(p, name string) ([]byte, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<20 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
		}
		return buf[:n], nil
	}
}

// copyXattrs copies src's extended attributes to dst. A destination filesystem without
// xattr support only loses them, as with BuildKit, which logs and goes on.
func copyXattrs(src, dst string) error {
	names, vals, err := listXattrs(src)
	if err != nil {
		return err
	}
	for _, n := range names {
		err := unix.Lsetxattr(dst, n, vals[n], 0)
		if errors.Is(err, unix.ENOTSUP) {
			continue
		}
		if err != nil {
			return fmt.Errorf("setting xattr %s of %s: %w", n, dst, err)
		}
	}
	return nil
}
