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
ldd /bin/busybox 2>&1 | grep -q "not a dynamic" || pkgs="$pkgs busybox-static"
[ -f /usr/include/seccomp.h ] || pkgs="$pkgs libseccomp-dev"
if [ -n "$pkgs" ]; then
	echo "install-deps: apt-get install$pkgs"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
fi
go mod download
