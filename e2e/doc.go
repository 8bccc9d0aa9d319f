// Package e2e runs the builder binary end to end, as a user would: real sandboxes over
// real overlayfs, a real registry (Debian's docker-registry on 127.0.0.1, started and
// stopped by the tests), and real consumers of the outputs (skopeo, umoci). It needs
// root and those tools; .ci/run installs them.
package e2e
