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
//
// One Convert lowers for one target platform (Options.Platform). Each stage has its
// own platform, as in BuildKit: FROM --platform (typically $BUILDPLATFORM, for a
// cross-compiling builder stage), else its base stage's, else the target's; its base
// image is resolved for that platform, while TARGET* args keep describing the target.
// A multi-platform build calls Convert once per platform; Result.RunPlatforms tells the
// caller which RUN steps run programs of which platform.
package dockerfile
