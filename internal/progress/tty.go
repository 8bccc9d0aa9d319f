package progress

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"
)

const (
	// frameInterval is how often the live view redraws: often enough that timers look
	// alive, rarely enough to cost nothing next to a build.
	frameInterval = 100 * time.Millisecond
	// tailLines is how many lines of a running step's output the live view shows.
	tailLines = 6
)

// liveView redraws the steps in place on a terminal. Its fields are guarded by the
// printer's mutex; only quit and done are used outside it.
type liveView struct {
	p             *Printer
	w             io.Writer
	fd            int // the terminal's descriptor to re-read its size, -1 if unknown
	width, height int
	lines         int // lines drawn by the last frame, to move back over
	quit, done    chan struct{}
}

func startLive(p *Printer, w io.Writer, o options) *liveView {
	l := &liveView{p: p, w: w, fd: -1, width: o.width, height: o.height,
		quit: make(chan struct{}), done: make(chan struct{})}
	if f, ok := w.(*os.File); ok {
		l.fd = int(f.Fd())
	}
	go l.loop()
	return l
}

func (l *liveView) loop() {
	defer close(l.done)
	t := time.NewTicker(frameInterval)
	defer t.Stop()
	for {
		select {
		case <-l.quit:
			l.p.mu.Lock()
			l.redraw(true)
			l.lines = 0
			l.p.mu.Unlock()
			return
		case <-t.C:
			l.p.mu.Lock()
			l.redraw(false)
			l.p.mu.Unlock()
		}
	}
}

// stop draws the final frame and waits for the loop to end.
func (l *liveView) stop() {
	close(l.quit)
	<-l.done
}

// above prints msg above the live frame, which is drawn again below it.
func (l *liveView) above(msg string) {
	var b strings.Builder
	l.erase(&b)
	b.WriteString(msg)
	b.WriteByte('\n')
	l.lines = 0
	l.frame(&b, false)
	io.WriteString(l.w, b.String())
}

// redraw replaces the last frame, in one write so the terminal never shows it half gone.
func (l *liveView) redraw(final bool) {
	var b strings.Builder
	l.erase(&b)
	l.frame(&b, final)
	io.WriteString(l.w, b.String())
}

// erase moves the cursor to the first line of the last frame and clears to the end.
func (l *liveView) erase(b *strings.Builder) {
	if l.lines > 0 {
		fmt.Fprintf(b, "\x1b[%dA\x1b[J", l.lines)
	}
	l.lines = 0
}

// frame renders the view. A live frame fits the terminal's height, dropping the oldest
// finished steps first; the final frame shows every step.
func (l *liveView) frame(b *strings.Builder, final bool) {
	if l.fd >= 0 {
		if w, h, err := term.GetSize(l.fd); err == nil && w > 0 && h > 0 {
			l.width, l.height = w, h
		}
	}
	width := l.width
	if width < 20 {
		width = 80
	}
	now := time.Now()
	finished := 0
	blocks := make([][]string, 0, len(l.p.steps))
	for _, s := range l.p.steps {
		if s.status != running {
			finished++
		}
		blocks = append(blocks, stepLines(s, now, width, final))
	}
	header := fmt.Sprintf("[+] Building %.1fs (%d/%d)", elapsed(l.p, now).Seconds(), finished, len(l.p.steps))
	if final {
		header += " FINISHED"
	}
	if !final && l.height > 1 {
		blocks = fitHeight(blocks, l.p.steps, l.height-2)
	}
	b.WriteString(fit(header, "", width))
	l.lines = 1
	for _, bl := range blocks {
		for _, line := range bl {
			b.WriteString(line)
			l.lines++
		}
	}
}

func elapsed(p *Printer, now time.Time) time.Duration {
	if p.closed {
		return p.end.Sub(p.start)
	}
	return now.Sub(p.start)
}

// stepLines renders one step: " => CACHED [2/4] WORKDIR /app   0.0s", and below a running
// (or, in the final frame, failed) step the last lines of its output.
func stepLines(s *step, now time.Time, width int, final bool) []string {
	d := s.completed.Sub(s.started)
	prefix := ""
	switch s.status {
	case running:
		d = now.Sub(s.started)
	case cached:
		prefix = "CACHED "
	case failed:
		prefix = "ERROR "
	}
	lines := []string{fit(" => "+prefix+s.name, fmt.Sprintf("%.1fs", d.Seconds()), width)}
	if s.status == running || (final && s.status == failed) {
		tail := s.tail
		if len(s.partial) > 0 {
			tail = appendTail(append([]string(nil), tail...), s.partial)
		}
		for _, t := range tail {
			lines = append(lines, fit(" => => # "+t, "", width))
		}
	}
	return lines
}

// fitHeight drops whole blocks of finished steps, oldest first, until the frame has at
// most room lines; if running steps alone overflow, the oldest lines go.
func fitHeight(blocks [][]string, steps []*step, room int) [][]string {
	total := 0
	for _, bl := range blocks {
		total += len(bl)
	}
	kept := blocks[:0:0]
	for i, bl := range blocks {
		if total > room && steps[i].status != running {
			total -= len(bl)
			continue
		}
		kept = append(kept, bl)
	}
	var lines []string
	for _, bl := range kept {
		lines = append(lines, bl...)
	}
	if len(lines) > room {
		lines = lines[len(lines)-max(room, 0):]
	}
	return [][]string{lines}
}

// appendTail adds a line of output to the kept tail, sanitized for the one-line view.
func appendTail(tail []string, line []byte) []string {
	// A progress bar redraws its line with \r: the text after the last one is what a
	// terminal would show.
	if i := strings.LastIndexByte(string(line), '\r'); i >= 0 {
		line = line[i+1:]
	}
	tail = append(tail, sanitize(string(line)))
	if len(tail) > tailLines {
		tail = append(tail[:0], tail[len(tail)-tailLines:]...)
	}
	return tail
}

// csi matches a terminal control sequence (colours, cursor moves) as tools print them.
var csi = regexp.MustCompile(`\x1b\[[0-?]*[ -/]*[@-~]`)

// sanitize drops control sequences and characters (they would move the cursor under the
// view's feet) and invalid UTF-8.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case r < 0x20 || r == 0x7f || r == utf8.RuneError:
			return -1
		}
		return r
	}, csi.ReplaceAllString(s, ""))
}

// fit pads left and right to width columns, shortening left with "..." when they do not
// fit, and ends the line.
func fit(left, right string, width int) string {
	room := width - utf8.RuneCountInString(right) - 2
	if n := utf8.RuneCountInString(left); n > room {
		r := []rune(left)
		left = string(r[:max(room-3, 0)]) + "..."
	}
	if right == "" {
		return left + "\n"
	}
	pad := max(width-utf8.RuneCountInString(left)-utf8.RuneCountInString(right)-1, 1)
	return left + strings.Repeat(" ", pad) + right + "\n"
}
