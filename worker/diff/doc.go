// Package diff converts between overlayfs upper directories and OCI layer tarballs.
//
// WriteLayer turns the upper directory of one build step into a compressed layer blob:
// overlay whiteouts (character devices 0/0) become ".wh.NAME" entries, opaque directories
// (trusted.overlay.opaque=y) get a ".wh..wh..opq" entry, and the overlay's own
// trusted.overlay.* bookkeeping never reaches the image. The output is deterministic: the
// same tree gives the same bytes, and WithSourceDateEpoch clamps times for reproducible
// builds.
//
// Apply does the reverse for pulled layers: it extracts a tarball into a snapshot directory
// in overlay form, so that the directory can be stacked as an overlay lower dir as is.
// Layer tarballs are untrusted input; Apply never writes outside its target directory.
package diff
