package progress

import (
	"time"
	"unicode/utf8"

	digest "github.com/opencontainers/go-digest"
)

// Event is one line of rawjson output. Every event has Type and Time; the other fields
// depend on the type (docs/progress-rawjson.md has examples):
//
//   - "vertex": a step started (Started set, Completed absent) or ended (Completed set,
//     and Cached or Error). Vertex is the step's op digest, Step its number in this build
//     (the #N of plain output), Name its description, Inputs the digests it depends on.
//     A step has exactly one start and one end event, in that order.
//   - "log": one line of a step's output without its newline (the last line of a step
//     may lack one in the output). Text holds it when it is valid UTF-8, Data (base64)
//     otherwise; exactly one of them is set, both absent for an empty line.
//   - "message": a line outside of any step (Text), such as "naming to app:latest".
//   - "summary": written once by Close; Totals counts the steps, cache hits and failures
//     and gives the build's duration in seconds.
//
// Times are RFC 3339 with nanoseconds, in UTC. Fields are added, never renamed; readers
// should ignore fields they do not know.
type Event struct {
	Type EventType `json:"type"`
	Time time.Time `json:"time"`

	Vertex    digest.Digest   `json:"vertex,omitempty"`
	Step      int             `json:"step,omitempty"`
	Name      string          `json:"name,omitempty"`
	Inputs    []digest.Digest `json:"inputs,omitempty"`
	Started   *time.Time      `json:"started,omitempty"`
	Completed *time.Time      `json:"completed,omitempty"`
	Cached    bool            `json:"cached,omitempty"`
	Error     string          `json:"error,omitempty"`

	Text string `json:"text,omitempty"`
	Data []byte `json:"data,omitempty"`

	Totals *Totals `json:"totals,omitempty"`
}

// Totals is the body of a summary event.
type Totals struct {
	Steps           int     `json:"steps"`
	Cached          int     `json:"cached"`
	Failed          int     `json:"failed"`
	DurationSeconds float64 `json:"duration_s"`
}

// EventType names the kind of an Event.
type EventType string

// The event types of rawjson output.
const (
	EventVertex  EventType = "vertex"
	EventLog     EventType = "log"
	EventMessage EventType = "message"
	EventSummary EventType = "summary"
)

func vertexEvent(s *step, err error) Event {
	started := s.started.UTC()
	ev := Event{Type: EventVertex, Vertex: s.v.Digest(), Step: s.n, Name: s.name, Started: &started}
	if s.completed.IsZero() {
		ev.Time = started
		for _, in := range s.v.Inputs() {
			ev.Inputs = append(ev.Inputs, in.Digest())
		}
		return ev
	}
	completed := s.completed.UTC()
	ev.Time, ev.Completed = completed, &completed
	ev.Cached = s.status == cached
	if err != nil {
		ev.Error = err.Error()
	}
	return ev
}

func logEvent(s *step, line []byte) Event {
	ev := Event{Type: EventLog, Time: time.Now().UTC(), Vertex: s.v.Digest(), Step: s.n}
	if utf8.Valid(line) {
		ev.Text = string(line)
	} else {
		ev.Data = append([]byte(nil), line...)
	}
	return ev
}

func summaryEvent(sum Summary, end time.Time) Event {
	return Event{Type: EventSummary, Time: end.UTC(), Totals: &Totals{
		Steps: sum.Steps, Cached: sum.Cached, Failed: sum.Failed,
		DurationSeconds: sum.Elapsed.Seconds(),
	}}
}

// emit writes one event. A failing writer (a closed pipe) must not fail the build, so
// the error is dropped, as plain output drops Fprintf's.
func (p *Printer) emit(ev Event) {
	_ = p.enc.Encode(ev)
}
