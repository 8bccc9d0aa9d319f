package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, spec string
		want       Output
		err        string
	}{
		{"docker", "type=docker,dest=out.tar", Output{Type: "docker", Dest: "out.tar", Tar: true}, ""},
		{"oci dir", "type=oci,dest=layout,tar=false", Output{Type: "oci", Dest: "layout", Tar: false}, ""},
		{"image push", "type=image,name=127.0.0.1:5000/a:1,push=true", Output{Type: "image", Names: []string{"127.0.0.1:5000/a:1"}, Push: true, Tar: true}, ""},
		{"several names", `type=image,"name=a:1,b:2"`, Output{Type: "image", Names: []string{"a:1", "b:2"}, Tar: true}, ""},
		{"registry alias", "type=registry,name=r/a", Output{Type: "image", Names: []string{"r/a"}, Push: true, Tar: true}, ""},
		{"no dest", "type=docker", Output{}, "needs dest"},
		{"no type", "dest=x", Output{}, "missing type"},
		{"bad type", "type=ftp,dest=x", Output{}, "unknown type"},
		{"bad bool", "type=image,name=a,push=maybe", Output{}, "push="},
		{"unknown attr", "type=docker,dest=x,colour=red", Output{}, "unknown attribute"},
		{"bare word", "out", Output{}, "not key=value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseOutput(tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseOutput(%q) error = %v, want containing %q", tc.spec, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("parseOutput(%q) (-want +got):\n%s", tc.spec, d)
			}
		})
	}
}

func FuzzParseOutput(f *testing.F) {
	for _, s := range []string{"type=docker,dest=a", `type=image,"name=a,b",push=true`, "type=oci,dest=x,tar=false"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseOutput(s)
		if err == nil && o.Type == "" {
			t.Fatalf("accepted %q without a type", s)
		}
	})
}
