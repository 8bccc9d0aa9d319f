// Package testutil holds helpers shared by builder's tests. Only test files import it.
package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/builderdev/builder/cache/content"
)

// RequiresRoot skips t unless it runs as root: overlay mounts, sandboxes, chown and
// mknod need it. CI runs the suite as root, so there these tests always run.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay mounts, sandboxes, chown)")
	}
}

// ContentStore opens an empty content store in a temporary directory.
func ContentStore(t testing.TB) *content.Store {
	t.Helper()
	cs, err := content.Open(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
