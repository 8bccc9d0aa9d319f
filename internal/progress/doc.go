// Package progress shows a build's steps as they run, in one of the displays buildx offers:
//
//   - plain: one line per event in BuildKit's numbered style ("#3 [2/4] RUN make",
//     "#3 0.412 output line", "#3 DONE 1.2s"); every output line is kept, none clipped.
//     Good for CI logs.
//   - tty: a live view redrawn about ten times a second: per step its status (running,
//     CACHED, ERROR), its time, and the last lines of a running step's output. Only on a
//     terminal; elsewhere tty falls back to plain.
//   - rawjson: one JSON object per line, for programs (see Event and docs/progress-rawjson.md).
//   - quiet: nothing.
//
// A Printer is the solver's Progress. It also counts steps and cache hits for the closing
// summary ("5 of 7 steps cached"), see Summary.
package progress
