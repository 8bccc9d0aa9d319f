package platform

import (
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParse(t *testing.T) {
	t.Parallel()
	host := Normalize(ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH})
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "linux/amd64", want: "linux/amd64"},
		{in: "linux/x86_64", want: "linux/amd64"},
		{in: "Linux/AMD64", want: "linux/amd64"},
		{in: "linux/amd64/v1", want: "linux/amd64"},
		{in: "linux/amd64/v3", want: "linux/amd64/v3"},
		{in: "linux/arm64", want: "linux/arm64"},
		{in: "linux/arm64/v8", want: "linux/arm64"},
		{in: "linux/aarch64", want: "linux/arm64"},
		{in: "linux/arm64/9", want: "linux/arm64/v9"},
		{in: "linux/arm", want: "linux/arm/v7"},
		{in: "linux/arm/7", want: "linux/arm/v7"},
		{in: "linux/arm/v6", want: "linux/arm/v6"},
		{in: "linux/armhf", want: "linux/arm/v7"},
		{in: "linux/armel", want: "linux/arm/v6"},
		{in: "linux/i686", want: "linux/386"},
		{in: "linux/riscv64", want: "linux/riscv64"},
		{in: "arm64", want: "linux/arm64"},
		{in: " linux/s390x ", want: "linux/s390x"},
		{in: "linux", want: Format(host)},
		{in: "local", want: Format(host)},
		{in: "", wantErr: "empty platform"},
		{in: "linux/", wantErr: "want os/arch[/variant]"},
		{in: "linux/arm/v7/x", wantErr: "want os/arch[/variant]"},
		{in: "/amd64", wantErr: "want os/arch[/variant]"},
		{in: "plan10/amd64", wantErr: `unknown operating system "plan10"`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if Format(got) != tc.want {
				t.Errorf("Parse(%q) = %s, want %s", tc.in, Format(got), tc.want)
			}
		})
	}
}

func TestParseList(t *testing.T) {
	t.Parallel()
	got, err := ParseList([]string{"linux/amd64,linux/arm64", "linux/arm64/v8", "", "linux/arm/v7, linux/x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, Format(p))
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64", "linux/arm/v7"}, names); diff != "" {
		t.Errorf("ParseList (-want +got):\n%s", diff)
	}
	if _, err := ParseList([]string{"linux/amd64,bad/"}); err == nil {
		t.Error("ParseList accepted a malformed platform")
	}
}

func TestEqualAndDir(t *testing.T) {
	t.Parallel()
	if !Equal(ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, ocispec.Platform{OS: "linux", Architecture: "aarch64"}) {
		t.Error("arm64/v8 and aarch64 differ")
	}
	if Equal(ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, ocispec.Platform{OS: "linux", Architecture: "arm"}) {
		t.Error("arm/v6 equals arm (v7)")
	}
	if got := Dir(ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}); got != "linux_arm_v7" {
		t.Errorf("Dir = %q, want linux_arm_v7", got)
	}
}
