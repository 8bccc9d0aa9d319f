// Package platform parses and normalises platform strings ("linux/arm64",
// "linux/arm/v7", "arm64") the way containerd's platforms package does, so that
// --platform values, FROM --platform and the platforms recorded in images and indexes
// compare equal when they mean the same machine.
package platform

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Host is the platform builder runs on: linux and the architecture it was compiled for.
func Host() ocispec.Platform {
	return Normalize(ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH})
}

// Parse reads os/arch[/variant], a lone architecture (linux is implied) or a lone
// operating system (the host's architecture is implied), and normalises it. "local" is the host platform, as in buildx.
func Parse(s string) (ocispec.Platform, error) {
	v := strings.TrimSpace(s)
	if v == "" {
		return ocispec.Platform{}, errors.New("empty platform")
	}
	if strings.EqualFold(v, "local") {
		return Host(), nil
	}
	parts := strings.Split(v, "/")
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, " \t,") {
			return ocispec.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant], e.g. linux/arm64", s)
		}
	}
	var p ocispec.Platform
	switch len(parts) {
	case 1:
		// As in containerd: an operating system alone means the host's architecture.
		if knownOS(parts[0]) {
			p = ocispec.Platform{OS: parts[0], Architecture: runtime.GOARCH}
		} else {
			p = ocispec.Platform{OS: "linux", Architecture: parts[0]}
		}
	case 2:
		p = ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	case 3:
		p = ocispec.Platform{OS: parts[0], Architecture: parts[1], Variant: parts[2]}
	default:
		return ocispec.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant], e.g. linux/arm64", s)
	}
	p = Normalize(p)
	if !knownOS(p.OS) {
		return ocispec.Platform{}, fmt.Errorf("platform %q: unknown operating system %q", s, p.OS)
	}
	return p, nil
}

// ParseList reads comma-separated platforms from each value (a --platform flag given
// once or several times), normalised, without duplicates, in the order first given.
func ParseList(values []string) ([]ocispec.Platform, error) {
	var out []ocispec.Platform
	seen := map[string]bool{}
	for _, v := range values {
		for _, f := range strings.Split(v, ",") {
			if strings.TrimSpace(f) == "" {
				continue
			}
			p, err := Parse(f)
			if err != nil {
				return nil, err
			}
			if k := Format(p); !seen[k] {
				seen[k] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// Format writes os/arch[/variant].
func Format(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Normalize lowercases p and maps architecture aliases and variants to their canonical
// names, as containerd does: x86_64 → amd64, aarch64 → arm64 (v8 is the default and
// dropped), armhf → arm/v7, armel → arm/v6, arm → arm/v7, i686 → 386.
func Normalize(p ocispec.Platform) ocispec.Platform {
	p.OS = strings.ToLower(p.OS)
	if p.OS == "macos" {
		p.OS = "darwin"
	}
	arch, variant := strings.ToLower(p.Architecture), strings.ToLower(p.Variant)
	switch arch {
	case "i386", "i486", "i586", "i686", "386":
		arch, variant = "386", ""
	case "x86_64", "x86-64", "amd64":
		arch = "amd64"
		if variant == "v1" {
			variant = ""
		}
	case "aarch64", "arm64":
		arch = "arm64"
		switch variant {
		case "8", "v8", "v8.0":
			variant = ""
		case "9", "9.0", "v9.0":
			variant = "v9"
		}
	case "armhf":
		arch, variant = "arm", "v7"
	case "armel":
		arch, variant = "arm", "v6"
	case "arm":
		switch variant {
		case "", "7":
			variant = "v7"
		case "5", "6", "8":
			variant = "v" + variant
		}
	}
	p.Architecture, p.Variant = arch, variant
	return p
}

// Equal says whether a and b name the same platform once normalised (OS version and
// features are not compared).
func Equal(a, b ocispec.Platform) bool {
	return Format(Normalize(a)) == Format(Normalize(b))
}

// Dir is the platform as one path element, as buildx names the per-platform
// directories of a multi-platform local or tar output: linux_arm_v7.
func Dir(p ocispec.Platform) string {
	return strings.ReplaceAll(Format(p), "/", "_")
}

func knownOS(os string) bool {
	switch strings.ToLower(os) {
	case "linux", "windows", "darwin", "macos", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "aix", "android", "ios", "dragonfly", "plan9", "js", "wasip1", "zos":
		return true
	}
	return false
}
