// Package depcheck holds only a test: it keeps the data flow one way by failing when a
// package imports one of builder's packages it must not (see ../shared DESIGN.md).
package depcheck
