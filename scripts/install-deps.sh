#!/bin/sh
# install-deps.sh: installs what builder's build, tests and demo need on Debian 12, as root.
# Idempotent: does nothing when everything is there.
set -eu
pkgs=""
need() { command -v "$1" >/dev/null 2>&1 || pkgs="$pkgs $2"; }
need docker-registry docker-registry
need skopeo skopeo
need umoci umoci
need runc runc
need gcc gcc
need git git
need ssh-agent openssh-client
need bzip2 bzip2
need xz xz-utils
need zstd zstd
need qemu-aarch64-static qemu-user-static
need update-binfmts binfmt-support
need dockerd docker.io
ldd /bin/busybox 2>&1 | grep -q "not a dynamic" || pkgs="$pkgs busybox-static"
[ -f /usr/include/seccomp.h ] || pkgs="$pkgs libseccomp-dev"
if [ -n "$pkgs" ]; then
	echo "install-deps: apt-get install$pkgs"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
fi
# Foreign-platform RUN steps go through binfmt_misc and qemu-user-static.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
# An arm64 busybox for the multi-platform end-to-end test (Docker Hub is unreachable).
deb=/var/cache/builder-test/busybox-static_arm64.deb
if [ ! -s "$deb" ]; then
	mkdir -p "$(dirname "$deb")"
	dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
	apt-get update -qq
	tmp=$(mktemp -d)
	(cd "$tmp" && apt-get download -qq busybox-static:arm64 >/dev/null)
	mv "$tmp"/busybox-static_*_arm64.deb "$deb"
	rm -rf "$tmp"
fi
go mod download
