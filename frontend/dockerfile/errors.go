package dockerfile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Error is a Dockerfile error tied to the lines that caused it, so a caller can print
// the offending lines. Line is 0 when no line is to blame (an unknown --target).
type Error struct {
	File string
	// Line is the first line of the instruction, EndLine its last (they differ for
	// instructions continued with a backslash).
	Line    int
	EndLine int
	// Instruction names what was wrong, e.g. "COPY --from=nope" or "RUN --mount";
	// empty when Err's message already says it.
	Instruction string
	Err         error
}

// Error formats as "FILE:LINE: INSTRUCTION: msg".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Instruction != "" {
		b.WriteString(e.Instruction)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// errNotSupported is what instructions and flags this frontend does not lower yet wrap.
var errNotSupported = errors.New("not supported yet")

// wordError names the word of an instruction that is at fault (a flag, a source, a
// stage name); the dispatch defer turns it into Error.Instruction "COPY --from=nope".
type wordError struct {
	word string
	err  error
}

func (e *wordError) Error() string { return e.word + ": " + e.err.Error() }
func (e *wordError) Unwrap() error { return e.err }

func withWord(word string, err error) error { return &wordError{word: word, err: err} }

// lineRange returns the first and last line of a location.
func lineRange(loc []parser.Range) (start, end int) {
	for i, r := range loc {
		if i == 0 || r.Start.Line < start {
			start = r.Start.Line
		}
		if r.End.Line > end {
			end = r.End.Line
		}
	}
	return start, end
}

// locate turns err into an *Error at loc. instr is the instruction keyword (upper case);
// a wordError inside err adds its word to it. Errors that already are an *Error pass
// through, so the innermost location wins.
func (c *converter) locate(err error, loc []parser.Range, instr string) error {
	var fe *Error
	if errors.As(err, &fe) {
		return err
	}
	start, end := lineRange(loc)
	var le *parser.LocationError
	if errors.As(err, &le) {
		// BuildKit's errors carry their own range; it is more precise than ours and the
		// message already names the instruction.
		if len(le.Locations) > 0 {
			start, end = lineRange(le.Locations[0])
		}
		err = le.Unwrap()
		instr = ""
	}
	var we *wordError
	if errors.As(err, &we) && instr != "" {
		instr += " " + we.word
		err = we.err
	}
	return &Error{File: c.file, Line: start, EndLine: end, Instruction: instr, Err: err}
}

// suggest returns the option closest to word when it is close enough to be a typo.
func suggest(word string, options []string) string {
	best, bestDist := "", max(2, len(word)/3)+1
	for _, o := range options {
		if d := levenshtein(strings.ToLower(word), strings.ToLower(o)); d < bestDist && o != word {
			best, bestDist = o, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
