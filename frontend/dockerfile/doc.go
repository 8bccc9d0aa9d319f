// Package dockerfile lowers a Dockerfile to builder's llb graph and an image config.
//
// It is three passes, as in BuildKit: BuildKit's parser turns text into an AST that keeps
// line ranges; BuildKit's instructions package turns the AST into typed commands grouped
// in stages; this package then walks the stages the target needs, in file order, and
// builds llb States (FROM → image source, RUN → exec, COPY/ADD/WORKDIR → file ops) while
// keeping the image config (Env, WorkingDir, User, Cmd, ...) and its history the way
// BuildKit's dockerfile2llb does, so images built here match docker build's.
//
// Stages the target does not need are not lowered at all: their base images are never
// resolved. Every error names the Dockerfile and line (see Error).
package dockerfile
