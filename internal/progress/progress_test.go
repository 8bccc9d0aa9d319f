package progress

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/builderdev/builder/llb"
)

// twoSteps is a FROM and a RUN on it, the graph every test drives.
func twoSteps(t *testing.T) (from, run *llb.Vertex) {
	t.Helper()
	v1, err := llb.Image("x@sha256:"+strings.Repeat("a", 64), llb.Meta{Description: "[1/2] FROM x"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := v1.Run(llb.ExecOp{Args: []string{"make"}}, llb.Meta{Description: "[2/2] RUN make"})
	if err != nil {
		t.Fatal(err)
	}
	return v1.Vertex(), r.Vertex()
}

func TestPlainOutput(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, Plain)
	from, run := twoSteps(t)
	p.Started(from)
	p.Finished(from, true, nil)
	p.Started(run)
	p.Log(run, []byte("compiling\npart"))
	p.Log(run, []byte("ial line"))
	p.Finished(run, false, errors.New("exit 2"))
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

func TestPlainKeepsEveryLine(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, Plain)
	_, run := twoSteps(t)
	p.Started(run)
	var out strings.Builder
	for i := range 5000 {
		out.WriteString(strings.Repeat("x", i%200) + "\n")
	}
	p.Log(run, []byte(out.String()))
	p.Finished(run, false, nil)
	p.Close()
	if n := strings.Count(buf.String(), "\n#1 "); n != 5000+1 {
		t.Errorf("plain output has %d step lines after the first, want 5001 (5000 log lines and DONE)", n)
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for _, m := range []string{"auto", "plain", "tty", "rawjson", "quiet"} {
		if _, err := ParseMode(m); err != nil {
			t.Errorf("ParseMode(%q) = %v", m, err)
		}
	}
	if _, err := ParseMode("fancy"); err == nil {
		t.Error("ParseMode accepted fancy")
	}
}

func TestRawJSONEventsParseBack(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, RawJSON)
	from, run := twoSteps(t)
	p.Started(from)
	p.Finished(from, true, nil)
	p.Started(run)
	p.Log(run, []byte("compiling\n\xff\xfe binary\npart"))
	p.Log(run, []byte("ial line"))
	p.Finished(run, false, errors.New("exit 2"))
	p.Printf("naming to %s", "app:latest")
	p.Close()
	p.Close()

	var got []Event
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("line %q is not an event: %v", sc.Text(), err)
		}
		if ev.Time.IsZero() {
			t.Errorf("event %q has no time", sc.Text())
		}
		got = append(got, ev)
	}
	if len(got) != 9 {
		t.Fatalf("got %d events, want 9:\n%s", len(got), buf.String())
	}
	for _, ev := range got[:8] {
		if ev.Type == EventVertex && (ev.Started == nil || ev.Started.IsZero()) {
			t.Errorf("vertex event without a start time: %+v", ev)
		}
	}
	type brief struct {
		Type      EventType
		Vertex    digest.Digest
		Step      int
		Name      string
		Inputs    []digest.Digest
		Completed bool
		Cached    bool
		Error     string
		Text      string
		Data      string
		Totals    *Totals
	}
	var briefs []brief
	for _, ev := range got {
		if ev.Totals != nil {
			if ev.Totals.DurationSeconds <= 0 {
				t.Errorf("summary duration %v, want > 0", ev.Totals.DurationSeconds)
			}
			ev.Totals.DurationSeconds = 0
		}
		briefs = append(briefs, brief{ev.Type, ev.Vertex, ev.Step, ev.Name, ev.Inputs, ev.Completed != nil,
			ev.Cached, ev.Error, ev.Text, string(ev.Data), ev.Totals})
	}
	fd, rd := from.Digest(), run.Digest()
	want := []brief{
		{Type: EventVertex, Vertex: fd, Step: 1, Name: "[1/2] FROM x"},
		{Type: EventVertex, Vertex: fd, Step: 1, Name: "[1/2] FROM x", Completed: true, Cached: true},
		{Type: EventVertex, Vertex: rd, Step: 2, Name: "[2/2] RUN make", Inputs: []digest.Digest{fd}},
		{Type: EventLog, Vertex: rd, Step: 2, Text: "compiling"},
		{Type: EventLog, Vertex: rd, Step: 2, Data: "\xff\xfe binary"},
		{Type: EventLog, Vertex: rd, Step: 2, Text: "partial line"},
		{Type: EventVertex, Vertex: rd, Step: 2, Name: "[2/2] RUN make", Completed: true, Error: "exit 2"},
		{Type: EventMessage, Text: "naming to app:latest"},
		{Type: EventSummary, Totals: &Totals{Steps: 2, Cached: 1, Failed: 1}},
	}
	if diff := cmp.Diff(want, briefs); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if got[6].Completed.Before(*got[6].Started) {
		t.Errorf("step 2 completed %v before it started %v", got[6].Completed, got[6].Started)
	}
}

// lockedView reads what the live view wrote so far, under the printer's lock.
func lockedView(p *Printer, buf *bytes.Buffer) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return buf.String()
}

func TestTTYLiveView(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer // written only under p.mu
	p := New(&buf, TTY, WithTerminal(80, 24))
	from, run := twoSteps(t)
	p.Started(from)
	p.Finished(from, true, nil)
	p.Started(run)
	for i := 1; i <= 8; i++ {
		p.Log(run, []byte("line"+string(rune('0'+i))+"\n"))
	}
	p.Log(run, []byte("downloading 10%\rdownloading 50%"))

	p.mu.Lock()
	p.live.redraw(false)
	p.mu.Unlock()
	live := lockedView(p, &buf)
	frame := live
	if i := strings.LastIndex(live, "\x1b[J"); i >= 0 {
		frame = live[i+len("\x1b[J"):]
	}
	for _, want := range []string{
		"[+] Building ", "(1/2)",
		" => CACHED [1/2] FROM x",
		" => [2/2] RUN make",
		" => => # line4", " => => # line8", " => => # downloading 50%",
	} {
		if !strings.Contains(frame, want) {
			t.Errorf("live frame lacks %q:\n%s", want, frame)
		}
	}
	for _, unwanted := range []string{"line3", "downloading 10%", "FINISHED"} {
		if strings.Contains(frame, unwanted) {
			t.Errorf("live frame shows %q:\n%s", unwanted, frame)
		}
	}
	for _, l := range strings.Split(strings.TrimSuffix(frame, "\n"), "\n") {
		if n := len([]rune(l)); n > 80 {
			t.Errorf("line wider than the terminal (%d): %q", n, l)
		}
	}

	p.Finished(run, false, errors.New("exit 2"))
	p.Printf("naming to app")
	p.Close()
	out := buf.String()
	if !strings.Contains(out, "\x1b[") {
		t.Error("the live view never moved the cursor back over its frame")
	}
	last := out[strings.LastIndex(out, "\x1b[J")+len("\x1b[J"):]
	for _, want := range []string{"(2/2) FINISHED", " => CACHED [1/2] FROM x", " => ERROR [2/2] RUN make", " => => # line8"} {
		if !strings.Contains(last, want) {
			t.Errorf("final frame lacks %q:\n%s", want, last)
		}
	}
	if i, j := strings.LastIndex(out, "naming to app\n"), strings.LastIndex(out, "FINISHED"); i < 0 || i > j {
		t.Errorf("message not printed above the final frame:\n%q", out)
	}
	p.Printf("built in %s", "1s")
	if !strings.HasSuffix(buf.String(), "\nbuilt in 1s\n") {
		t.Errorf("a line after Close is not plainly below the frame: %q", buf.String()[len(out):])
	}
}

func TestTTYRedrawsOnItsOwn(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, TTY, WithTerminal(80, 24))
	_, run := twoSteps(t)
	p.Started(run)
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(lockedView(p, &buf), "[+] Building") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no two frames in 5s: %q", lockedView(p, &buf))
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Finished(run, false, nil)
	p.Close()
}

func TestTTYFrameFitsTheTerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, TTY, WithTerminal(60, 10))
	base, err := llb.Image("x@sha256:"+strings.Repeat("a", 64), llb.Meta{Description: "FROM x"})
	if err != nil {
		t.Fatal(err)
	}
	var vs []*llb.Vertex
	for i := range 20 {
		s, err := base.Run(llb.ExecOp{Args: []string{"step", string(rune('a' + i))}}, llb.Meta{Description: "RUN step " + string(rune('a'+i))})
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, s.Vertex())
		p.Started(s.Vertex())
		if i < 19 {
			p.Finished(s.Vertex(), i%2 == 0, nil)
		}
	}
	p.Log(vs[19], []byte("working\n"))
	p.mu.Lock()
	var b strings.Builder
	p.live.frame(&b, false)
	p.mu.Unlock()
	frame := b.String()
	if n := strings.Count(frame, "\n"); n > 9 {
		t.Errorf("live frame has %d lines on a 10-line terminal:\n%s", n, frame)
	}
	for _, want := range []string{"(19/20)", "RUN step t", "# working"} {
		if !strings.Contains(frame, want) {
			t.Errorf("live frame lacks %q:\n%s", want, frame)
		}
	}
	p.Finished(vs[19], false, nil)
	p.Close()
	out := buf.String()
	last := out[strings.LastIndex(out, "\x1b[J")+len("\x1b[J"):]
	if n := strings.Count(last, " => "); n != 20 {
		t.Errorf("final frame shows %d steps, want all 20:\n%s", n, last)
	}
}

func TestTTYOnAPipeIsPlain(t *testing.T) {
	t.Parallel()
	for _, m := range []Mode{TTY, Auto} {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			p := New(&buf, m)
			_, run := twoSteps(t)
			p.Started(run)
			p.Finished(run, false, nil)
			p.Close()
			if !regexp.MustCompile(`^#1 \[2/2\] RUN make\n#1 DONE \d+\.\ds\n$`).MatchString(buf.String()) {
				t.Errorf("%s on a buffer wrote %q, want plain output", m, buf.String())
			}
		})
	}
}

func TestQuietWritesNothing(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, Quiet)
	_, run := twoSteps(t)
	p.Started(run)
	p.Log(run, []byte("out\n"))
	p.Finished(run, false, nil)
	p.Printf("built")
	p.Close()
	if buf.Len() != 0 {
		t.Errorf("quiet wrote %q", buf.String())
	}
	if s := p.Summary(); s.Steps != 1 {
		t.Errorf("quiet summary counts %d steps, want 1", s.Steps)
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, Plain)
	from, run := twoSteps(t)
	p.Started(from)
	p.Finished(from, true, nil)
	p.Started(run)
	p.Finished(run, false, nil)
	p.Close()
	s := p.Summary()
	if s.Steps != 2 || s.Cached != 1 || s.Failed != 0 || s.Elapsed <= 0 {
		t.Errorf("Summary() = %+v, want 2 steps, 1 cached, 0 failed, elapsed > 0", s)
	}
	if again := p.Summary(); again.Elapsed != s.Elapsed {
		t.Errorf("elapsed moved after Close: %v then %v", s.Elapsed, again.Elapsed)
	}
	for _, tc := range []struct {
		s    Summary
		want string
	}{
		{Summary{Steps: 7, Cached: 5}, "5 of 7 steps cached"},
		{Summary{Steps: 1, Cached: 1}, "1 of 1 step cached"},
		{Summary{Steps: 3, Cached: 0, Failed: 1}, "0 of 3 steps cached, 1 failed"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.s.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWithTerminalRejectsZeroSize(t *testing.T) {
	t.Parallel()
	var o options
	if err := WithTerminal(0, 24)(&o); err == nil {
		t.Error("WithTerminal(0, 24) accepted")
	}
}

func TestTailSanitizes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"colour", "\x1b[31mred\x1b[0m text", "red text"},
		{"carriage return", "10%\r50%\r90%", "90%"},
		{"tab and bell", "a\tb\x07c", "a bc"},
		{"invalid utf-8", "ok\xff", "ok"},
		{"plain", "hello wörld", "hello wörld"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := appendTail(nil, []byte(tc.in))
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("appendTail(%q) = %q, want [%q]", tc.in, got, tc.want)
			}
		})
	}
}

func TestRawJSONKeepsShellReadable(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, RawJSON)
	p.Printf("RUN echo a > /b && true")
	if !strings.Contains(buf.String(), `"text":"RUN echo a > /b && true"`) {
		t.Errorf("rawjson escaped the shell text: %s", buf.String())
	}
}
