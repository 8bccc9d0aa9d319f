// Package emulation tells whether this host can run another platform's programs, as
// a RUN step for a foreign platform needs: natively (amd64 runs 386), or through
// binfmt_misc and a qemu-user-static interpreter registered with the F (fix binary)
// flag. With F the kernel opens the interpreter when the handler is registered, so it
// also runs binaries inside a sandbox whose root filesystem has no qemu at all; nothing
// in the executor has to change.
//
// Builds call Check for each platform whose RUN steps they will execute, before
// running anything, so a missing emulator fails fast with the fix instead of an
// "exec format error" in the middle of a build.
package emulation

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultBinfmtDir is where the kernel's binfmt_misc file system is mounted.
const DefaultBinfmtDir = "/proc/sys/fs/binfmt_misc"

// ErrUnavailable is wrapped by Check's errors: the host cannot run the platform's
// programs.
var ErrUnavailable = errors.New("emulation unavailable")

// UnavailableError says why programs of Platform cannot run on Host and how to fix it.
type UnavailableError struct {
	Platform ocispec.Platform
	Host     ocispec.Platform
	// Reason is what is missing, e.g. "no binfmt_misc handler qemu-aarch64 is registered".
	Reason string
	// Fix is what to do about it.
	Fix string
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("running %s programs on this %s host needs emulation: %s; %s",
		format(e.Platform), format(e.Host), e.Reason, e.Fix)
}

// Unwrap makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Unwrap() error { return ErrUnavailable }

// qemuArch maps GOARCH-style architectures to the names qemu (and Debian's
// qemu-user-static binfmt entries, qemu-NAME) uses.
var qemuArch = map[string]string{
	"amd64":    "x86_64",
	"386":      "i386",
	"arm64":    "aarch64",
	"arm":      "arm",
	"ppc64le":  "ppc64le",
	"ppc64":    "ppc64",
	"s390x":    "s390x",
	"riscv64":  "riscv64",
	"mips64le": "mips64el",
	"mips64":   "mips64",
	"mipsle":   "mipsel",
	"mips":     "mips",
	"loong64":  "loongarch64",
}

// HandlerName is the binfmt_misc entry qemu-user-static registers for p's
// architecture (qemu-aarch64 for arm64), "" when qemu has none.
func HandlerName(p ocispec.Platform) string {
	if a, ok := qemuArch[p.Architecture]; ok {
		return "qemu-" + a
	}
	return ""
}

// Native says whether host runs p's programs without emulation: the same OS and
// architecture, or 386 on amd64. Variants are not compared (an amd64/v3 CPU is not
// checked for; arm on arm64 is not assumed, since not every arm64 CPU runs 32-bit code).
func Native(host, p ocispec.Platform) bool {
	if p.OS != host.OS {
		return false
	}
	if p.Architecture == host.Architecture {
		return true
	}
	return host.Architecture == "amd64" && p.Architecture == "386"
}

// Check returns nil when host can run p's programs: natively, or through an enabled
// binfmt_misc handler in binfmtDir (DefaultBinfmtDir when "") registered with the F
// flag. Otherwise the error is an *UnavailableError.
func Check(binfmtDir string, host, p ocispec.Platform) error {
	if Native(host, p) {
		return nil
	}
	unavailable := func(reason, fix string) error {
		return &UnavailableError{Platform: p, Host: host, Reason: reason, Fix: fix}
	}
	install := fmt.Sprintf("install qemu-user-static (apt-get install qemu-user-static) to run %s steps on this %s host", format(p), format(host))
	if p.OS != "linux" || host.OS != "linux" {
		return unavailable(fmt.Sprintf("only linux programs can run here, not %s", p.OS), "build for a linux platform")
	}
	name := HandlerName(p)
	if name == "" {
		return unavailable(fmt.Sprintf("qemu has no user-mode emulator for %s", p.Architecture), "build on a "+format(p)+" host")
	}
	if binfmtDir == "" {
		binfmtDir = DefaultBinfmtDir
	}
	if st, err := os.ReadFile(filepath.Join(binfmtDir, "status")); err != nil {
		return unavailable("binfmt_misc is not mounted at "+binfmtDir,
			"mount it (mount -t binfmt_misc binfmt_misc "+DefaultBinfmtDir+") and "+install)
	} else if strings.TrimSpace(string(st)) != "enabled" {
		return unavailable("binfmt_misc is disabled", "enable it (echo 1 > "+filepath.Join(DefaultBinfmtDir, "status")+") and "+install)
	}
	entry, err := readEntry(filepath.Join(binfmtDir, name))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return unavailable("no binfmt_misc handler "+name+" is registered", install)
	case err != nil:
		return unavailable(fmt.Sprintf("reading binfmt_misc handler %s: %v", name, err), install)
	case !entry.enabled:
		return unavailable("the binfmt_misc handler "+name+" is disabled", "enable it (update-binfmts --enable "+name+")")
	case !slices.Contains(entry.flags, 'F'):
		// Without F the kernel looks for the interpreter inside the sandbox's root
		// filesystem, where it is not.
		return unavailable("the binfmt_misc handler "+name+" lacks the F (fix binary) flag, so sandboxes cannot reach its interpreter "+entry.interpreter,
			"register it with the F flag, as Debian's qemu-user-static does (apt-get install --reinstall qemu-user-static)")
	}
	return nil
}

type binfmtEntry struct {
	enabled     bool
	interpreter string
	flags       []rune
}

// readEntry reads a binfmt_misc handler file:
//
//	enabled
//	interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
//	flags: PF
//	...
func readEntry(p string) (binfmtEntry, error) {
	f, err := os.Open(p)
	if err != nil {
		return binfmtEntry{}, err
	}
	defer f.Close()
	var e binfmtEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "enabled":
			e.enabled = true
		case strings.HasPrefix(line, "interpreter "):
			e.interpreter = strings.TrimSpace(strings.TrimPrefix(line, "interpreter "))
		case strings.HasPrefix(line, "flags:"):
			e.flags = []rune(strings.TrimSpace(strings.TrimPrefix(line, "flags:")))
		}
	}
	return e, sc.Err()
}

func format(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
