package depcheck

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/builderdev/builder/"

// allowed lists, per package prefix, the prefixes of builder packages it may import.
// The first matching rule (longest prefix first in this list) applies.
var allowed = []struct {
	pkg   string
	may   []string
	notes string
}{
	{"llb", nil, "the graph imports nothing of ours"},
	{"frontend", []string{"llb", "frontend"}, "lowering never runs anything"},
	{"cache", []string{"cache"}, "the store imports no higher layer"},
	{"worker", []string{"worker", "cache"}, "the worker never knows the solver or frontend"},
	{"solver/ops", []string{"solver", "llb", "cache", "worker", "internal/registry"}, ""},
	{"solver", []string{"solver", "llb", "cache"}, "the solver is testable with fake ops"},
	{"exporter", []string{"exporter", "cache", "internal/registry"}, "exporters never see the solver or frontend"},
	{"internal/registry", []string{"internal/registry", "cache"}, ""},
	{"internal/progress", []string{"internal/progress", "llb"}, ""},
	{"internal/cli", []string{""}, "the CLI wires everything"},
	{"cmd", []string{"internal/cli", "worker/runc"}, ""},
	{"e2e", []string{""}, ""},
	{"internal/depcheck", nil, ""},
	{"internal/testutil", []string{"cache"}, "shared test helpers sit below everything"},
	{"internal/proc", nil, "process liveness sits below everything"},
}

// foundation packages import nothing of ours and may be imported by any package.
var foundation = []string{"internal/proc"}

// testOnly may be imported by any package's tests.
const testOnly = "internal/testutil"

func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}} | {{join .TestImports " "}} {{join .XTestImports " "}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		rule := -1
		for i, r := range allowed {
			if pkg == r.pkg || strings.HasPrefix(pkg, r.pkg+"/") {
				if rule < 0 || len(r.pkg) > len(allowed[rule].pkg) {
					rule = i
				}
			}
		}
		if rule < 0 {
			t.Errorf("package %s has no import rule in depcheck_test.go", pkg)
			continue
		}
		inTests := false
		for _, imp := range f[1:] {
			if imp == "|" {
				inTests = true
				continue
			}
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := strings.TrimPrefix(imp, mod)
			if inTests && dep == testOnly {
				continue
			}
			if !inTests && dep == testOnly {
				t.Errorf("%s imports %s outside its tests", pkg, dep)
				continue
			}
			ok := slices.Contains(foundation, dep)
			for _, may := range allowed[rule].may {
				if may == "" || dep == may || strings.HasPrefix(dep, may+"/") {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s, which rule %q forbids (%s)", pkg, dep, allowed[rule].pkg, allowed[rule].notes)
			}
		}
	}
}
