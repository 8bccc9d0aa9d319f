package dockerfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/builderdev/builder/llb"
)

// FuzzConvert feeds arbitrary Dockerfiles to Convert: it must return an error or a
// consistent result, never panic.
func FuzzConvert(f *testing.F) {
	// The end-to-end conformance suite's Dockerfiles are seeds too: they cover every
	// instruction and flag the way users write them.
	for _, root := range []string{"testdata", "testdata-negative", "../../e2e/testdata/conformance"} {
		files, err := filepath.Glob(filepath.Join(root, "*", "Dockerfile"))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			dt, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(dt, "")
		}
	}
	f.Add([]byte("FROM busybox AS a\nFROM a AS b\nCOPY --from=b / /\n"), "b")
	f.Fuzz(func(t *testing.T, dockerfile []byte, target string) {
		res, err := Convert(t.Context(), dockerfile, Options{
			Target:    target,
			Resolver:  &fakeResolver{},
			Platform:  testPlatform,
			BuildArgs: map[string]string{"A": "1"},
		})
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not an *Error: %v", err, err)
			}
			return
		}
		if len(res.History) != len(res.Image.History) {
			t.Fatalf("len(History) = %d, len(Image.History) = %d", len(res.History), len(res.Image.History))
		}
		if !res.State.IsScratch() {
			if _, err := llb.Marshal(res.State.Vertex()); err != nil {
				t.Fatalf("llb.Marshal: %v", err)
			}
		}
	})
}
