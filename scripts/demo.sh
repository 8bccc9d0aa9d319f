#!/bin/bash
# demo.sh: builds builder, makes a busybox base image from Debian's busybox-static and
# pushes it to a registry on 127.0.0.1, builds examples/helloworld on it, lists the image
# and its layers, and runs its CMD through umoci + runc. Everything lives in .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (sandboxes and overlay mounts need it)" >&2; exit 1; }
export PATH=$PATH:/usr/local/go/bin

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing dependencies"
scripts/install-deps.sh
step "building bin/builder"
make -s build
B="$PWD/bin/builder"
demo="$PWD/.demo"
mkdir -p "$demo"
export BUILDER_ROOT="$demo/root"

REG=${DEMO_REGISTRY:-127.0.0.1:5000}
reg_pid=""
cleanup() {
	if [ -n "$reg_pid" ]; then
		kill "$reg_pid" 2>/dev/null || true
		wait "$reg_pid" 2>/dev/null || true
	fi
	rm -rf "$demo/bundle"
}
trap cleanup EXIT
if ! curl -fsS "http://$REG/v2/" >/dev/null 2>&1; then
	step "starting a registry on $REG (Debian's docker-registry)"
	cat >"$demo/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $demo/registry}}
http: {addr: $REG}
YML
	docker-registry serve "$demo/registry.yml" >"$demo/registry.log" 2>&1 &
	reg_pid=$!
	for _ in $(seq 100); do curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
	curl -fsS "http://$REG/v2/" >/dev/null || { echo "registry did not start: see $demo/registry.log" >&2; exit 1; }
fi

step "building the base image FROM scratch and pushing it to $REG/busybox:latest"
examples/busybox/make-rootfs.sh examples/busybox/rootfs
"$B" build --progress=plain --output "type=image,name=$REG/busybox:latest,push=true" examples/busybox

step "builder build -t helloworld examples/helloworld"
"$B" build --progress=plain -t helloworld --build-arg "BASE=$REG/busybox:latest" \
	--output "type=docker,dest=$demo/helloworld.tar" \
	--output "type=oci,tar=false,dest=$demo/helloworld-oci" \
	examples/helloworld

step "a second, fully cached build"
"$B" build --progress=plain -t helloworld --build-arg "BASE=$REG/busybox:latest" examples/helloworld

step "builder images"
"$B" images

step "the image's layers, read by skopeo from the docker tarball"
skopeo inspect "docker-archive:$demo/helloworld.tar" | sed -n '/"Layers"/,/]/p'

step "running the image's CMD: umoci unpacks the OCI layout, runc runs it"
rm -rf "$demo/bundle"
umoci unpack --image "$demo/helloworld-oci:latest" "$demo/bundle" >/dev/null
sed -i 's/"terminal": *true/"terminal":false/' "$demo/bundle/config.json"
runc --root "$demo/runc" run -b "$demo/bundle" "builder-demo-$$"
