//go:build linux

package runc

import (
	"github.com/opencontainers/runc/libcontainer"

	// The cgroupfs manager applies device rules only when this package is linked in.
	_ "github.com/opencontainers/cgroups/devices"
	// nsenter's C constructor joins the namespaces before the Go runtime starts in
	// the re-executed "init" process.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Init is the sandbox side of a libcontainer start: the binary re-executed with the
// argument "init" sets up the sandbox and execs the step's process. Call it first
// thing in main (and in TestMain of tests that run sandboxes) when
// os.Args[1] == "init". It does not return.
func Init() {
	libcontainer.Init()
}
