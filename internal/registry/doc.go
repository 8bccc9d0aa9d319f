// Package registry talks to OCI distribution registries: it resolves image references
// to a platform's manifest and config, fetches layer blobs into the content store, and
// pushes images. It is a thin layer over go-containerregistry's remote package that
// adds three things builder needs:
//
//   - Docker's reference normalisation ("busybox" → "docker.io/library/busybox:latest"),
//     so names match what users see in Docker;
//   - remembered tag resolutions under the store root, so a build whose base image was
//     resolved before needs no network (unless the caller asks to pull);
//   - errors that name the reference and say what went wrong in user terms
//     (unreachable, unauthorised, not found) while still wrapping the original error.
package registry
