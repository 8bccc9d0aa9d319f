package runc

import (
	"os"
	"testing"
)

// TestMain doubles as the sandbox's init: libcontainer re-executes this test binary
// with the argument "init".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		Init()
	}
	os.Exit(m.Run())
}
