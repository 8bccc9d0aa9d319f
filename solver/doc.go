// Package solver runs an llb graph. It walks the graph concurrently: every vertex starts
// as soon as its own inputs are ready, each digest runs at most once per solve, and the
// number of ops executing at once is bounded. Before running a vertex it computes the
// vertex's cache key (op digest + input keys + any content checksum the op adds) and
// looks it up in the index; a hit reuses the recorded result without running anything.
//
// The solver knows nothing about containers: ops are bound to implementations by a
// ResolveFunc (see solver/ops), so the solver is tested with fake ops.
package solver
