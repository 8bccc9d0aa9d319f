package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/builderdev/builder/frontend/dockerfile"
	"github.com/builderdev/builder/llb"
	"github.com/builderdev/builder/solver"
	"github.com/builderdev/builder/worker"
)

// sourceError is a build error shown with the Dockerfile lines it points at and, for a
// failed step, the last lines the step printed.
type sourceError struct {
	err     error
	file    string
	line    int
	src     []byte
	logs    []byte
	summary string
}

func (e *sourceError) Unwrap() error { return e.err }

func (e *sourceError) Error() string {
	var b strings.Builder
	b.WriteString(e.summary)
	if len(e.logs) > 0 {
		lines := strings.Split(strings.TrimRight(string(e.logs), "\n"), "\n")
		if len(lines) > 10 {
			lines = lines[len(lines)-10:]
		}
		b.WriteString("\n------\n")
		for _, l := range lines {
			b.WriteString(" > " + l + "\n")
		}
		b.WriteString("------")
	}
	if ex := excerpt(e.src, e.line); ex != "" {
		fmt.Fprintf(&b, "\n%s:%d\n--------------------\n%s--------------------", e.file, e.line, ex)
	}
	return b.String()
}

// withSource adds the Dockerfile excerpt to errors that carry a location.
func withSource(err error, src []byte) error {
	var fe *dockerfile.Error
	if errors.As(err, &fe) && fe.Line > 0 {
		return &sourceError{err: err, file: fe.File, line: fe.Line, src: src, summary: err.Error()}
	}
	var ve *solver.VertexError
	if errors.As(err, &ve) {
		m := ve.Vertex.Meta()
		se := &sourceError{err: err, src: src, logs: ve.Logs, summary: err.Error()}
		var xe *worker.ExitError
		if errors.As(err, &xe) {
			cmd := ""
			if e, ok := ve.Vertex.Op().(*llb.ExecOp); ok {
				cmd = strings.Join(e.Args, " ")
			}
			se.summary = fmt.Sprintf("%s: process %q did not complete successfully: exit code: %d", ve.Where(), cmd, xe.Code)
		}
		if m.Location != nil {
			se.file, se.line = m.Location.File, m.Location.StartLine
		}
		return se
	}
	return err
}

// excerpt returns the lines around line (1-based) of src, the line itself marked.
func excerpt(src []byte, line int) string {
	if line <= 0 || len(src) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(src), "\n"), "\n")
	if line > len(lines) {
		return ""
	}
	var b strings.Builder
	for i := max(line-2, 1); i <= min(line+1, len(lines)); i++ {
		mark := "  "
		if i == line {
			mark = ">>>"
		}
		fmt.Fprintf(&b, " %3d | %-3s %s\n", i, mark, lines[i-1])
	}
	return b.String()
}
