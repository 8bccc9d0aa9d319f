// Package runc runs build steps in sandboxes made with libcontainer, in process.
//
// A sandbox gets its own mount, pid, uts and ipc namespaces (and a network namespace
// with only lo for network "none"), Docker's default capability set, no new
// privileges, and a cgroup below /builder in the devices (enforcing Docker's device
// rules), pids and memory hierarchies only (a cgroup in every v1 hierarchy costs the
// builder about 1.5 ms of CPU a run). It is started over an already-mounted root
// filesystem, normally an overlay prepared with snapshot.WithInitLayer so that the
// sandbox's mount points (/dev, /proc, /sys, /etc/resolv.conf, ...) exist below the
// step's upper dir and nothing of the sandbox leaks into a layer. A spec's extra bind
// and tmpfs mounts follow the standard ones, in order; a missing target is created
// (the caller removes it), and nothing else is written to the rootfs for them. All
// sandbox mounts live in the sandbox's mount namespace and vanish with it.
//
// libcontainer starts a sandbox by re-executing the current binary with the argument
// "init". Every binary that runs sandboxes — cmd/builder and every test binary of a
// package that calls Executor.Run — must call Init first thing in main (or TestMain)
// when os.Args[1] == "init":
//
//	func main() {
//		if len(os.Args) > 1 && os.Args[1] == "init" {
//			runc.Init() // does not return
//		}
//		...
//	}
//
// That re-execution is most of a sandbox's cost: the init process pays the Go
// runtime's start and the package initialisation of the whole binary (about 10 ms of a
// 35–40 ms run of `true` on a 2-core VM), before libcontainer's own setup. Keep
// package-level work in the builder binary light, and link it statically (dynamic
// loading adds about 150 page faults to every sandbox). libcontainer seals the binary
// with a read-only overlay of its directory; when that directory contains the state
// directory, overlayfs refuses and libcontainer copies the whole binary for every run
// instead, so keep the store out of the binary's directory.
package runc
