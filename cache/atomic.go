package cache

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteAtomic runs write on a new temporary file beside name and, if write succeeds,
// syncs the file and renames it over name: readers, in this process or another, see
// the old content or the new, never a part, and a failure or a kill leaves name as it
// was. The file gets mode 0644. write may seek and read f; it must not close it.
func WriteAtomic(name string, write func(f *os.File) error) (err error) {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	// CreateTemp makes 0600 files; store records and exported images are meant to be read.
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// WriteFileAtomic writes dt to name with WriteAtomic. Every small record of the store
// (cache index, image store, tag resolutions) is written this way.
func WriteFileAtomic(name string, dt []byte) error {
	return WriteAtomic(name, func(f *os.File) error {
		if _, err := f.Write(dt); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
		return nil
	})
}
