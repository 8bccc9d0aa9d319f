package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/builderdev/builder/llb"
)

// Mode selects the display.
type Mode string

// Display modes, as buildx names them.
const (
	Auto    Mode = "auto"
	Plain   Mode = "plain"
	TTY     Mode = "tty"
	RawJSON Mode = "rawjson"
	Quiet   Mode = "quiet"
)

// ParseMode checks a --progress value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, Plain, TTY, RawJSON, Quiet:
		return m, nil
	}
	return "", fmt.Errorf("unknown progress mode %q (want auto, plain, tty, rawjson or quiet)", s)
}

// Option configures a Printer.
type Option func(*options) error

type options struct {
	width, height int
	terminal      bool
}

// WithTerminal declares that the writer is a terminal of the given size, for writers New
// cannot inspect (a pty wrapper, a test). Auto and TTY modes then draw the live view.
func WithTerminal(width, height int) Option {
	return func(o *options) error {
		if width <= 0 || height <= 0 {
			return errors.New("terminal size must be greater than zero")
		}
		o.terminal, o.width, o.height = true, width, height
		return nil
	}
}

// Printer implements solver.Progress. Close it when the build ends.
type Printer struct {
	w      io.Writer
	mode   Mode // Plain, TTY, RawJSON or Quiet after New resolved Auto
	mu     sync.Mutex
	steps  []*step
	byV    map[*llb.Vertex]*step
	start  time.Time
	closed bool
	end    time.Time
	enc    *json.Encoder // rawjson
	live   *liveView     // tty
}

type status int

const (
	running status = iota
	done
	cached
	failed
)

type step struct {
	n         int
	v         *llb.Vertex
	name      string
	started   time.Time
	completed time.Time
	status    status
	partial   []byte   // output not yet ended by a newline
	tail      []string // tty: last complete lines of output
}

// New returns a printer writing to w. Auto gives the live view on a terminal and plain
// output elsewhere; TTY on something that is not a terminal is plain too, as a live view
// there would only fill a log with escape sequences.
func New(w io.Writer, mode Mode, opts ...Option) *Printer {
	var o options
	for _, opt := range opts {
		// Options only reject nonsense sizes; ignoring one leaves the writer undetected,
		// which is how New has always treated unknown writers.
		_ = opt(&o)
	}
	if !o.terminal {
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			o.terminal = true
			o.width, o.height, _ = term.GetSize(int(f.Fd()))
		}
	}
	p := &Printer{w: w, mode: mode, byV: map[*llb.Vertex]*step{}, start: time.Now()}
	switch mode {
	case Quiet:
		p.w = io.Discard
	case RawJSON:
		p.enc = json.NewEncoder(w)
		// Step names are shell commands: keep "a > b" readable rather than "\u003e".
		p.enc.SetEscapeHTML(false)
	case Auto, TTY:
		p.mode = Plain
		if o.terminal {
			p.mode = TTY
			p.live = startLive(p, w, o)
		}
	default:
		p.mode = Plain
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
	s := &step{n: len(p.steps) + 1, v: v, name: describe(v), started: time.Now()}
	p.steps = append(p.steps, s)
	p.byV[v] = s
	switch p.mode {
	case Plain:
		fmt.Fprintf(p.w, "#%d %s\n", s.n, s.name)
	case RawJSON:
		p.emit(vertexEvent(s, nil))
	}
}

// Log implements solver.Progress.
func (p *Printer) Log(v *llb.Vertex, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.byV[v]
	if s == nil || p.mode == Quiet {
		return
	}
	s.partial = append(s.partial, b...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		p.line(s, s.partial[:i])
		s.partial = s.partial[i+1:]
	}
	// The buffer's front was consumed; start over so it does not grow without bound.
	if len(s.partial) == 0 {
		s.partial = nil
	}
}

// line shows one complete line of a step's output.
func (p *Printer) line(s *step, l []byte) {
	switch p.mode {
	case Plain:
		fmt.Fprintf(p.w, "#%d %.3f %s\n", s.n, time.Since(s.started).Seconds(), l)
	case RawJSON:
		p.emit(logEvent(s, l))
	case TTY:
		s.tail = appendTail(s.tail, l)
	}
}

// Finished implements solver.Progress.
func (p *Printer) Finished(v *llb.Vertex, isCached bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.byV[v]
	if s == nil {
		return
	}
	s.completed = time.Now()
	switch {
	case err != nil:
		s.status = failed
	case isCached:
		s.status = cached
	default:
		s.status = done
	}
	if len(s.partial) > 0 {
		p.line(s, s.partial)
		s.partial = nil
	}
	switch p.mode {
	case Plain:
		switch s.status {
		case failed:
			fmt.Fprintf(p.w, "#%d ERROR: %v\n", s.n, err)
		case cached:
			fmt.Fprintf(p.w, "#%d CACHED\n", s.n)
		default:
			fmt.Fprintf(p.w, "#%d DONE %.1fs\n", s.n, s.completed.Sub(s.started).Seconds())
		}
	case RawJSON:
		p.emit(vertexEvent(s, err))
	}
}

// Printf writes a line outside of any step (e.g. "exporting to ..."); in rawjson it is a
// message event.
func (p *Printer) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	switch {
	case p.mode == RawJSON:
		p.emit(Event{Type: EventMessage, Time: time.Now().UTC(), Text: msg})
	case p.live != nil && !p.closed:
		p.live.above(msg)
	default:
		fmt.Fprintln(p.w, msg)
	}
}

// Summary counts the steps so far.
type Summary struct {
	Steps   int
	Cached  int
	Failed  int
	Elapsed time.Duration // from New to Close (or to now, before Close)
}

// String reads "5 of 7 steps cached".
func (s Summary) String() string {
	noun := "steps"
	if s.Steps == 1 {
		noun = "step"
	}
	str := fmt.Sprintf("%d of %d %s cached", s.Cached, s.Steps, noun)
	if s.Failed > 0 {
		str += fmt.Sprintf(", %d failed", s.Failed)
	}
	return str
}

// Summary returns the counts of steps and cache hits, for the closing line
// ("built sha256:... in 1.23s, 5 of 7 steps cached").
func (p *Printer) Summary() Summary {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.summary()
}

func (p *Printer) summary() Summary {
	end := p.end
	if !p.closed {
		end = time.Now()
	}
	sum := Summary{Steps: len(p.steps), Elapsed: end.Sub(p.start)}
	for _, s := range p.steps {
		switch s.status {
		case cached:
			sum.Cached++
		case failed:
			sum.Failed++
		}
	}
	return sum
}

// Close ends the display: the live view draws its final frame and stops, rawjson writes
// its summary event. Later Printf lines go below. Close may be called more than once.
func (p *Printer) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.end = time.Now()
	if p.mode == RawJSON {
		p.emit(summaryEvent(p.summary(), p.end))
	}
	live := p.live
	p.mu.Unlock()
	if live != nil {
		live.stop()
	}
}
