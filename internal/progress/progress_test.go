package progress

import (
	"bytes"
	"errors"
	"regexp"
	"testing"

	"github.com/builderdev/builder/llb"
)

func TestPlainOutput(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, Plain)
	v1, _ := llb.Image("x@sha256:"+string(bytes.Repeat([]byte("a"), 64)), llb.Meta{Description: "[1/2] FROM x"})
	r, _ := v1.Run(llb.ExecOp{Args: []string{"make"}}, llb.Meta{Description: "[2/2] RUN make"})
	p.Started(v1.Vertex())
	p.Finished(v1.Vertex(), true, nil)
	p.Started(r.Vertex())
	p.Log(r.Vertex(), []byte("compiling\npart"))
	p.Log(r.Vertex(), []byte("ial line"))
	p.Finished(r.Vertex(), false, errors.New("exit 2"))
	p.Close()
	want := regexp.MustCompile(`^#1 \[1/2\] FROM x
#1 CACHED
#2 \[2/2\] RUN make
#2 \d+\.\d{3} compiling
#2 \d+\.\d{3} partial line
#2 ERROR: exit 2
$`)
	if !want.MatchString(buf.String()) {
		t.Errorf("plain output:\n%s", buf.String())
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for _, m := range []string{"auto", "plain", "tty", "quiet"} {
		if _, err := ParseMode(m); err != nil {
			t.Errorf("ParseMode(%q) = %v", m, err)
		}
	}
	if _, err := ParseMode("fancy"); err == nil {
		t.Error("ParseMode accepted fancy")
	}
}
