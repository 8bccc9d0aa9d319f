// Package progress shows a build's steps as they run: "plain" prints one line per event
// in BuildKit's numbered style (good for CI logs); "tty" redraws a live view of the steps
// with timings and the last line of running output.
package progress

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/builderdev/builder/llb"
)

// Mode selects the display.
type Mode string

// Display modes, as buildx names them.
const (
	Auto  Mode = "auto"
	Plain Mode = "plain"
	TTY   Mode = "tty"
	Quiet Mode = "quiet"
)

// ParseMode checks a --progress value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, Plain, TTY, Quiet:
		return m, nil
	}
	return "", fmt.Errorf("unknown progress mode %q (want auto, plain, tty or quiet)", s)
}

// Printer implements solver.Progress. Close it when the build ends.
type Printer struct {
	w      io.Writer
	tty    bool
	mu     sync.Mutex
	steps  []*step
	byV    map[*llb.Vertex]*step
	start  time.Time
	lines  int // lines drawn by the last tty frame
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

type step struct {
	n       int
	name    string
	started time.Time
	elapsed time.Duration
	status  string // "" running, "DONE", "CACHED", "ERROR"
	partial []byte // plain: output not yet ended by a newline
	last    string // tty: last output line
}

// New returns a printer writing to w. In Auto mode a terminal gets the tty view.
func New(w io.Writer, mode Mode) *Printer {
	if mode == Quiet {
		w = io.Discard
	}
	p := &Printer{w: w, byV: map[*llb.Vertex]*step{}, start: time.Now()}
	if f, ok := w.(*os.File); ok && (mode == TTY || mode == Auto) && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		p.stop, p.done = make(chan struct{}), make(chan struct{})
		go p.loop()
	}
	return p
}

func describe(v *llb.Vertex) string {
	if d := v.Meta().Description; d != "" {
		return d
	}
	if s, ok := v.Op().(*llb.SourceOp); ok {
		return "load " + s.Identifier
	}
	return v.Op().Kind()
}

// Started implements solver.Progress.
func (p *Printer) Started(v *llb.Vertex) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &step{n: len(p.steps) + 1, name: describe(v), started: time.Now()}
	p.steps = append(p.steps, s)
	p.byV[v] = s
	if !p.tty {
		fmt.Fprintf(p.w, "#%d %s\n", s.n, s.name)
	}
}

// Log implements solver.Progress.
func (p *Printer) Log(v *llb.Vertex, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.byV[v]
	if s == nil {
		return
	}
	if p.tty {
		txt := strings.TrimRight(string(b), "\n")
		if i := strings.LastIndexByte(txt, '\n'); i >= 0 {
			txt = txt[i+1:]
		}
		if txt != "" {
			s.last = txt
		}
		return
	}
	s.partial = append(s.partial, b...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "#%d %.3f %s\n", s.n, time.Since(s.started).Seconds(), s.partial[:i])
		s.partial = s.partial[i+1:]
	}
}

// Finished implements solver.Progress.
func (p *Printer) Finished(v *llb.Vertex, cached bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.byV[v]
	if s == nil {
		return
	}
	s.elapsed = time.Since(s.started)
	switch {
	case err != nil:
		s.status = "ERROR"
	case cached:
		s.status = "CACHED"
	default:
		s.status = "DONE"
	}
	if p.tty {
		return
	}
	if len(s.partial) > 0 {
		fmt.Fprintf(p.w, "#%d %.3f %s\n", s.n, s.elapsed.Seconds(), s.partial)
		s.partial = nil
	}
	switch s.status {
	case "ERROR":
		fmt.Fprintf(p.w, "#%d ERROR: %v\n", s.n, err)
	case "CACHED":
		fmt.Fprintf(p.w, "#%d CACHED\n", s.n)
	default:
		fmt.Fprintf(p.w, "#%d DONE %.1fs\n", s.n, s.elapsed.Seconds())
	}
}

// Printf writes a line outside of any step (e.g. "exporting to ...").
func (p *Printer) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.tty && !p.closed
	if live {
		p.clear()
	}
	fmt.Fprintf(p.w, format+"\n", args...)
	if live {
		p.lines = 0
		p.draw()
	}
}

// Close draws the final frame and stops the live view; later Printf lines go below
// it. Close may be called more than once.
func (p *Printer) Close() {
	p.mu.Lock()
	wasClosed := p.closed
	p.closed = true
	p.mu.Unlock()
	if p.tty && !wasClosed {
		close(p.stop)
		<-p.done
	}
}

func (p *Printer) loop() {
	defer close(p.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.mu.Lock()
			p.clear()
			p.draw()
			p.lines = 0
			p.mu.Unlock()
			return
		case <-t.C:
			p.mu.Lock()
			p.clear()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// clear moves the cursor to the start of the last frame and erases it.
func (p *Printer) clear() {
	if p.lines > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA\x1b[J", p.lines)
	}
	p.lines = 0
}

func (p *Printer) draw() {
	width := 100
	if f, ok := p.w.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 20 {
			width = w
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[+] Building %.1fs (%d steps)\n", time.Since(p.start).Seconds(), len(p.steps))
	lines := 1
	for _, s := range p.steps {
		el := s.elapsed
		if s.status == "" {
			el = time.Since(s.started)
		}
		tag := fmt.Sprintf("%.1fs", el.Seconds())
		if s.status == "CACHED" || s.status == "ERROR" {
			tag = s.status
		}
		line := fmt.Sprintf(" => %s", s.name)
		b.WriteString(fit(line, tag, width))
		lines++
		if s.status == "" && s.last != "" {
			b.WriteString(fit(" => > "+s.last, "", width))
			lines++
		}
	}
	io.WriteString(p.w, b.String())
	p.lines = lines
}

func fit(left, right string, width int) string {
	room := width - len(right) - 2
	if len(left) > room {
		left = left[:max(room-3, 0)] + "..."
	}
	pad := max(width-len(left)-len(right)-1, 1)
	return left + strings.Repeat(" ", pad) + right + "\n"
}
