// Package registry talks to OCI distribution registries: it resolves image references
// to a platform's manifest and config, fetches layer blobs into the content store, and
// pushes images and indexes. It is a thin layer over go-containerregistry's remote
// package that adds what builder needs:
//
//   - Docker's reference normalisation ("busybox" → "docker.io/library/busybox:latest"),
//     so names match what users see in Docker;
//   - remembered tag resolutions under the store root, so a build whose base image was
//     resolved before needs no network (unless the caller asks to pull);
//   - a record per blob of the repositories known to hold it (pulled from or pushed
//     to), so a push to another repository of the same registry mounts the blob
//     instead of uploading it; blobs the target already has are skipped (HEAD);
//   - Docker's credentials: config.json auths, credHelpers and credsStore, and the
//     login/logout side that verifies and stores them (Login, SaveLogin, RemoveLogin);
//   - retries with backoff on 5xx, 429 and dropped connections, including downloads
//     cut off mid-body, which start over into a fresh ingest so a partial blob is
//     never visible in the content store;
//   - insecure registries (plain http, unverified TLS) by host, always for loopback;
//   - errors that name the reference and say what went wrong in user terms
//     (unreachable, unauthorised with the login command to run, denied, not found)
//     while still wrapping the original error.
package registry
