package emulation

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64"}
	armv7 = ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
)

// binfmtDir writes a fake binfmt_misc directory: status plus the given entries.
func binfmtDir(t *testing.T, status string, entries map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if status != "" {
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range entries {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const aarch64Entry = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c46\nmask ffffffff\n"

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		dir     func(t *testing.T) string
		host    ocispec.Platform
		p       ocispec.Platform
		wantErr string // "" for success
	}{
		{name: "native", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") }, host: amd64, p: amd64},
		{name: "386 on amd64", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") }, host: amd64, p: ocispec.Platform{OS: "linux", Architecture: "386"}},
		{name: "registered with F", dir: func(t *testing.T) string {
			return binfmtDir(t, "enabled", map[string]string{"qemu-aarch64": aarch64Entry})
		}, host: amd64, p: arm64},
		{name: "arm on amd64 uses qemu-arm", dir: func(t *testing.T) string {
			return binfmtDir(t, "enabled", map[string]string{"qemu-aarch64": aarch64Entry})
		}, host: amd64, p: armv7, wantErr: "no binfmt_misc handler qemu-arm is registered; install qemu-user-static (apt-get install qemu-user-static) to run linux/arm/v7 steps on this linux/amd64 host"},
		{name: "not registered", dir: func(t *testing.T) string { return binfmtDir(t, "enabled", nil) }, host: amd64, p: arm64,
			wantErr: "running linux/arm64 programs on this linux/amd64 host needs emulation: no binfmt_misc handler qemu-aarch64 is registered; install qemu-user-static (apt-get install qemu-user-static) to run linux/arm64 steps on this linux/amd64 host"},
		{name: "binfmt_misc not mounted", dir: func(t *testing.T) string { return t.TempDir() }, host: amd64, p: arm64, wantErr: "binfmt_misc is not mounted"},
		{name: "binfmt_misc disabled", dir: func(t *testing.T) string { return binfmtDir(t, "disabled", nil) }, host: amd64, p: arm64, wantErr: "binfmt_misc is disabled"},
		{name: "handler disabled", dir: func(t *testing.T) string {
			return binfmtDir(t, "enabled", map[string]string{"qemu-aarch64": strings.Replace(aarch64Entry, "enabled", "disabled", 1)})
		}, host: amd64, p: arm64, wantErr: "update-binfmts --enable qemu-aarch64"},
		{name: "handler without F", dir: func(t *testing.T) string {
			return binfmtDir(t, "enabled", map[string]string{"qemu-aarch64": strings.Replace(aarch64Entry, "flags: PF", "flags: P", 1)})
		}, host: amd64, p: arm64, wantErr: "lacks the F (fix binary) flag"},
		{name: "amd64 on arm64 host", dir: func(t *testing.T) string { return binfmtDir(t, "enabled", nil) }, host: arm64, p: amd64, wantErr: "no binfmt_misc handler qemu-x86_64"},
		{name: "no qemu for arch", dir: func(t *testing.T) string { return binfmtDir(t, "enabled", nil) }, host: amd64, p: ocispec.Platform{OS: "linux", Architecture: "wasm"}, wantErr: "qemu has no user-mode emulator for wasm"},
		{name: "windows", dir: func(t *testing.T) string { return binfmtDir(t, "enabled", nil) }, host: amd64, p: ocispec.Platform{OS: "windows", Architecture: "amd64"}, wantErr: "only linux programs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Check(tc.dir(t), tc.host, tc.p)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Check error = %v, want it to contain %q", err, tc.wantErr)
			}
			var ue *UnavailableError
			if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) {
				t.Errorf("Check error %T is not an *UnavailableError wrapping ErrUnavailable", err)
			}
		})
	}
}

// TestCheckHost reads this machine's binfmt_misc: it must not fail on a native platform,
// and when qemu-aarch64 is registered with F (as scripts/install-deps.sh sets up), arm64 passes.
func TestCheckHost(t *testing.T) {
	t.Parallel()
	if err := Check("", amd64, amd64); err != nil {
		t.Fatalf("native: %v", err)
	}
	e, err := readEntry(filepath.Join(DefaultBinfmtDir, "qemu-aarch64"))
	if err != nil || !e.enabled {
		t.Skip("qemu-aarch64 is not registered here")
	}
	if err := Check("", amd64, arm64); err != nil {
		t.Errorf("Check(arm64) with qemu-aarch64 registered: %v", err)
	}
}

func TestHandlerName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p    ocispec.Platform
		want string
	}{
		{arm64, "qemu-aarch64"},
		{armv7, "qemu-arm"},
		{ocispec.Platform{OS: "linux", Architecture: "ppc64le"}, "qemu-ppc64le"},
		{ocispec.Platform{OS: "linux", Architecture: "riscv64"}, "qemu-riscv64"},
		{ocispec.Platform{OS: "linux", Architecture: "mips64le"}, "qemu-mips64el"},
		{ocispec.Platform{OS: "linux", Architecture: "loong64"}, "qemu-loongarch64"},
		{ocispec.Platform{OS: "linux", Architecture: "wasm"}, ""},
	} {
		if got := HandlerName(tc.p); got != tc.want {
			t.Errorf("HandlerName(%s) = %q, want %q", format(tc.p), got, tc.want)
		}
	}
}
