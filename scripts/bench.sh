#!/bin/bash
# bench.sh [CASE...]: builder against its peers on the shared benchmark corpus
# (`make bench-peers`; `make bench` runs the Go micro-benchmarks first).
#
# For every corpus case (../shared/bench/corpus: small, bigctx, runheavy, parallel) it times,
# with the definitions of ../shared/bench/peers.sh so that its reference figures compare:
#   cold         builder: empty --root (the base image is pulled inside the timed run);
#                buildah: empty storage, base image re-pulled untimed;
#                Docker: `--no-cache` on a daemon that holds the base image.
#                Each cold run gets a fresh hard-linked copy of the context at a new path.
#   noop         the same build again, nothing changed.
#   incremental  the case's mutate.path file rewritten (new inode, new content), built again.
#   cold-oci     runheavy only, builder: a cold build exported with
#                --output type=oci,dest=FILE (gzip layers). Docker 20.10's embedded BuildKit
#                has no oci exporter, so the target is 0.2 x the upstream BuildKit v0.32
#                reference of ../shared/bench/README.md (22.06 s).
# Tools are interleaved run by run (builder, Docker, buildah, builder, ...) so that load from
# other work on the machine hits them alike. Each case and tool has its own state directory.
# Peak RSS: builder and buildah from GNU time (`Maximum resident set size`); Docker from
# sampling dockerd and its children (the client does no work).
#
# Output: a markdown table on stdout (medians, min-max, ratios builder/peer, targets of
# issue 4) and a JSON file ($JSON) with every sample. Progress and tool logs go to stderr and
# $BENCH_ROOT/<case>/*.log.
#
# Environment:
#   N=5            runs per cell (noop, incremental; cold too unless COLD_N says otherwise)
#   COLD_N=N       cold (and cold-oci) runs per cell; runs past COLD_N reuse the state
#   PEERS=0        1: also Docker's BuildKit (docker.io) and `buildah bud --layers`,
#                  installed with apt-get when missing
#   CASES          cases to run (default: small bigctx runheavy parallel; or pass them as args)
#   SHARED         the shared bench directory (default: ../shared beside the repo)
#   BENCH_ROOT     state and logs (default ${XDG_CACHE_HOME:-$HOME/.cache}/builder-bench/make-bench)
#   CTXROOT        generated contexts, shared with peers.sh (default .../builder-bench/ctx)
#   JSON           result file (default bin/bench.json in the repo)
#   BUILDER_BIN    builder binary (default: bin/builder, built with `make build`)
#   BUILDAH_DRIVER storage driver for buildah (default overlay; vfs works everywhere, slowly)
#   KEEP=1         keep the per-case stores after the run (default: removed)
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$REPO/../shared/bench}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/builder-bench
BENCH_ROOT=${BENCH_ROOT:-$CACHE/make-bench}
CTXROOT=${CTXROOT:-$CACHE/ctx}
JSON=${JSON:-$REPO/bin/bench.json}
N=${N:-5}
COLD_N=${COLD_N:-$N}
PEERS=${PEERS:-0}
BUILDAH_DRIVER=${BUILDAH_DRIVER:-overlay}
REGISTRY=127.0.0.1:5000 # the corpus Dockerfiles name it
BASE=$REGISTRY/busybox:latest
BK_OCI_REF=22.06 # upstream BuildKit v0.32, runheavy cold to an OCI tarball (README)
if [ $# -gt 0 ]; then CASES="$*"; else CASES=${CASES:-small bigctx runheavy parallel}; fi

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sandboxes, overlay mounts and dockerd need it)"
[ -d "$SHARED/corpus" ] || die "no corpus at $SHARED (set SHARED to the shared bench directory)"
case $N$COLD_N in *[!0-9]*) die "N and COLD_N must be numbers" ;; esac
[ "$N" -ge 1 ] && [ "$COLD_N" -ge 1 ] && [ "$COLD_N" -le "$N" ] || die "want 1 <= COLD_N <= N"

apt_install() {
	log "installing $*"
	apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
[ -x /usr/bin/time ] || apt_install time || die "GNU time is needed (apt-get install time)"

TOOLS="builder"
if [ "$PEERS" = 1 ]; then
	{ [ -x /usr/bin/docker ] && command -v dockerd >/dev/null; } || apt_install docker.io || die "installing docker.io"
	command -v buildah >/dev/null || apt_install buildah || die "installing buildah"
	TOOLS="builder docker buildah"
fi

mkdir -p "$BENCH_ROOT" "$(dirname "$JSON")"
SAMPLES=$BENCH_ROOT/samples.csv
: >"$SAMPLES"

# Everything started here is stopped by PID on exit; the registry only if we started it.
REG_PID=
DOCKERD_PID=
cleanup() {
	stop_dockerd
	if [ -n "$REG_PID" ]; then
		kill "$REG_PID" 2>/dev/null
		log "stopped the registry we started (pid $REG_PID)"
	fi
	for c in $CASES; do
		clean_case "$BENCH_ROOT/$c"
	done
}

# clean_case DIR: drops a case's stores and context copies, keeps its logs.
clean_case() {
	unmount_under "$1"
	[ "${KEEP:-0}" = 1 ] || rm -rf "$1/builder" "$1/buildah" "$1/docker" "$1"/ctx-* "$1"/*.tar "$1"/*.out
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# unmount_under DIR: whatever a tool left mounted below DIR, deepest first.
unmount_under() {
	findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r |
		while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
}

# --- base image, builder binary, contexts ---------------------------------------------
if ! curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
	BENCH_STATE=$CACHE "$SHARED/setup-base.sh" "$REGISTRY" >/dev/null || die "setting up the base image registry"
	REG_PID=$(cat "$CACHE/registry.pid" 2>/dev/null)
else
	"$SHARED/setup-base.sh" "$REGISTRY" >/dev/null || die "pushing the base image to $REGISTRY"
fi
if [ -z "${BUILDER_BIN:-}" ]; then
	log "building bin/builder"
	make -s -C "$REPO" build >&2 || die "building builder"
	BUILDER_BIN=$REPO/bin/builder
fi
[ -x "$BUILDER_BIN" ] || die "no builder binary at $BUILDER_BIN"
for c in $CASES; do
	[ -f "$SHARED/corpus/$c/Dockerfile" ] || die "unknown case $c"
	[ -d "$CTXROOT/$c" ] || sh "$SHARED/corpus/$c/gen.sh" "$CTXROOT/$c" || die "generating the $c context"
done

# --- Docker's daemon, one per case --------------------------------------------------------
start_dockerd() { # DIR
	local d=$1
	mkdir -p "$d"
	dockerd --iptables=false --ip6tables=false --bridge=none --data-root "$d/data" \
		--exec-root "$d/exec" --pidfile "$d/dockerd.pid" -H "unix://$d/docker.sock" >"$d/dockerd.log" 2>&1 &
	DOCKERD_PID=$!
	export DOCKER_HOST=unix://$d/docker.sock DOCKER_CONFIG=$d/config DOCKER_BUILDKIT=1
	for _ in $(seq 120); do /usr/bin/docker version >/dev/null 2>&1 && return 0; sleep 0.5; done
	die "dockerd did not start; see $d/dockerd.log"
}
stop_dockerd() {
	[ -n "$DOCKERD_PID" ] || return 0
	kill -TERM "$DOCKERD_PID" 2>/dev/null
	for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
	kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID"
	wait "$DOCKERD_PID" 2>/dev/null
	DOCKERD_PID=
}
# dockerd and its children (containerd, shims): the processes a Docker build runs in.
docker_pids() {
	local p=$DOCKERD_PID kids
	echo "$p"
	kids=$(pgrep -P "$p")
	for k in $kids; do echo "$k"; pgrep -P "$k"; done
}

# --- one build per tool -----------------------------------------------------------------
# build_cmd TOOL CTX [extra args]: sets CMD to one build of case $C.
build_cmd() {
	local tool=$1 ctx=$2
	shift 2
	case $tool in
	builder)
		# An --output run measures the export alone, without also naming into the store.
		local tag=(-t "bench-$C:builder")
		[[ " $* " == *" --output "* ]] && tag=()
		CMD=("$BUILDER_BIN" --root "$CW/builder" build --progress plain -f "$DF" "${tag[@]}" "$@" "$ctx") ;;
	docker) CMD=(/usr/bin/docker build --network host -q -f "$DF" -t "bench-$C:docker" "$@" "$ctx") ;;
	buildah) CMD=("${BUILDAH[@]}" bud --layers --network host --tls-verify=false -q -f "$DF" -t "bench-$C:buildah" "$@" "$ctx") ;;
	esac
}

cold_prepare() { # TOOL
	case $1 in
	builder) rm -rf "$CW/builder" ;;
	docker) /usr/bin/docker rmi -f "bench-$C:docker" >/dev/null 2>&1 ;;
	buildah)
		"${BUILDAH[@]}" rm --all >/dev/null 2>&1
		"${BUILDAH[@]}" rmi -a -f >/dev/null 2>&1
		"${BUILDAH[@]}" pull --tls-verify=false -q "$BASE" >/dev/null 2>&1 ;;
	esac
	sync
}

cold_args() { # TOOL: what makes a build cold beyond cold_prepare
	[ "$1" = docker ] && echo --no-cache
}

# measure TOOL MODE ITER CTX [extra build args]: times one build, appends a sample.
measure() {
	local tool=$1 mode=$2 it=$3 ctx=$4
	shift 4
	local tf=$CW/time.out rssf=$CW/rss.out sampler= rc=0 t0 t1 rss secs st=ok
	: >"$rssf"
	if [ "$tool" = docker ]; then
		(while :; do
			s=0
			for p in $(docker_pids); do
				r=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null)
				s=$((s + ${r:-0}))
			done
			echo "$s"
			sleep 0.1
		done) >>"$rssf" &
		sampler=$!
	fi
	echo "=== $C $tool $mode #$it $ctx $*" >>"$CW/$tool.log"
	t0=$(date +%s%N)
	build_cmd "$tool" "$ctx" "$@"
	/usr/bin/time -v -o "$tf" "${CMD[@]}" >>"$CW/$tool.log" 2>&1 </dev/null || rc=$?
	t1=$(date +%s%N)
	if [ -n "$sampler" ]; then
		kill "$sampler" 2>/dev/null
		wait "$sampler" 2>/dev/null
		rss=$(sort -n "$rssf" | tail -1)
	else
		rss=$(awk -F: '/Maximum resident set size/{gsub(/ /, "", $2); print $2}' "$tf")
	fi
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b - a) / 1e9}')
	[ "$rc" = 0 ] || st="FAIL(rc=$rc)"
	echo "$C,$tool,$mode,$it,$secs,${rss:-0},$st" >>"$SAMPLES"
	log "$(printf '%-8s %-7s %-11s #%d %7ss rss=%sKiB %s' "$C" "$tool" "$mode" "$it" "$secs" "${rss:-?}" "$st")"
}

mutate() { # CTX ITER: rewrite the case's small file (breaks the hard link, new content)
	local f=$1/$MUTATE
	{ cat "$f"; echo "change $2 $(date +%s%N)"; } >"$f.tmp.$$" && mv "$f.tmp.$$" "$f"
}

# --- the runs ---------------------------------------------------------------------------
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
declare -A CTX
for C in $CASES; do
	CW=$BENCH_ROOT/$C
	DF=$SHARED/corpus/$C/Dockerfile
	MUTATE=$(cat "$SHARED/corpus/$C/mutate.path")
	unmount_under "$CW"
	rm -rf "$CW"
	mkdir -p "$CW"
	BUILDAH=(buildah --root "$CW/buildah/root" --runroot "$CW/buildah/run" --storage-driver "$BUILDAH_DRIVER")
	if [ "$PEERS" = 1 ]; then
		start_dockerd "$CW/docker"
		# Docker's cold runs keep the base image (as in peers.sh): fetch it untimed.
		printf 'FROM %s\nRUN true\n' "$BASE" | /usr/bin/docker build --network host -q -t bench-prime - >/dev/null 2>&1
	fi
	log "case $C: $N runs ($COLD_N cold) of: $TOOLS"
	for i in $(seq 1 "$N"); do
		# Before the tools' cold runs, so that the builder's noop still follows its cold run.
		if [ "$C" = runheavy ] && [ "$i" -le "$COLD_N" ]; then
			cold_prepare builder
			measure builder cold-oci "$i" "$CTXROOT/$C" --output "type=oci,dest=$CW/runheavy-oci.tar"
			rm -f "$CW/runheavy-oci.tar"
		fi
		for tool in $TOOLS; do
			if [ "$i" -le "$COLD_N" ]; then
				[ -n "${CTX[$tool]:-}" ] && rm -rf "${CTX[$tool]}"
				CTX[$tool]=$CW/ctx-$tool-$i
				cp -al "$CTXROOT/$C" "${CTX[$tool]}"
				cold_prepare "$tool"
				measure "$tool" cold "$i" "${CTX[$tool]}" $(cold_args "$tool")
			fi
			measure "$tool" noop "$i" "${CTX[$tool]}"
			mutate "${CTX[$tool]}" "$i"
			measure "$tool" incremental "$i" "${CTX[$tool]}"
		done
	done
	if [ "$PEERS" = 1 ]; then
		stop_dockerd
		"${BUILDAH[@]}" rm --all >/dev/null 2>&1
		"${BUILDAH[@]}" rmi -a -f >/dev/null 2>&1
	fi
	unset CTX
	declare -A CTX
	clean_case "$CW"
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T0))

# --- report -----------------------------------------------------------------------------
# stats CASE TOOL MODE: "median min max runs peak_rss_kib" over the successful samples.
stats() {
	awk -F, -v c="$1" -v t="$2" -v m="$3" '$1 == c && $2 == t && $3 == m && $7 == "ok" {print $5, $6}' "$SAMPLES" |
		sort -n | awk '{a[NR] = $1; if ($2 > r) r = $2}
			END {
				if (NR == 0) { print "- - - 0 0"; exit }
				med = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
				printf "%.3f %.3f %.3f %d %d\n", med, a[1], a[NR], NR, r
			}'
}
ratio() { # A B
	awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'
}
# target CASE MODE: issue 4's goal for the cell, as "KIND LIMIT" (ratio to Docker or seconds).
target() {
	case $1/$2 in
	small/noop | bigctx/noop) echo "ratio 0.3" ;;
	small/incremental) echo "ratio 0.5" ;;
	runheavy/cold) echo "ratio 0.8" ;;
	parallel/cold) echo "ratio 0.95" ;;
	runheavy/cold-oci) awk -v r="$BK_OCI_REF" 'BEGIN{printf "seconds %.2f\n", 0.2 * r}' ;;
	esac
}
verdict() { # VALUE LIMIT
	awk -v v="$1" -v l="$2" 'BEGIN{ if (v == "-") print "n/a"; else if (v + 0 <= l + 0) print "met"; else print "**missed**" }'
}
cell() { # MEDIAN MIN MAX
	[ "$1" = - ] && { echo "FAIL"; return; }
	printf '%s (%s–%s)' "$1" "$2" "$3"
}

modes_of() { [ "$1" = runheavy ] && echo "cold noop incremental cold-oci" || echo "cold noop incremental"; }

echo "## builder vs peers: medians in seconds (min–max), ratio builder/peer"
echo
echo "$(date -u +%FT%TZ), $(nproc) cores, load $LOAD0 → $LOAD1, N=$N COLD_N=$COLD_N, $((ELAPSED / 60)) min;" \
	"builder $(git -C "$REPO" describe --always --dirty 2>/dev/null)$([ "$PEERS" = 1 ] &&
		echo ", docker $(dockerd --version | awk '{print $3}' | tr -d ,), $(buildah --version | awk '{print $1, $3}') ($BUILDAH_DRIVER)")"
echo
if [ "$PEERS" = 1 ]; then
	echo "| case | mode | builder | Docker BuildKit | builder/Docker | buildah --layers | builder/buildah | builder peak RSS MiB | target | |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
else
	echo "| case | mode | builder | builder peak RSS MiB | target | |"
	echo "|---|---|---|---|---|---|"
fi
JCELLS=()
for C in $CASES; do
	for m in $(modes_of "$C"); do
		read -r bmed bmin bmax bn brss <<<"$(stats "$C" builder "$m")"
		JCELLS+=("$(printf '{"case":"%s","mode":"%s","tool":"builder","median_s":%s,"min_s":%s,"max_s":%s,"runs":%d,"peak_rss_kib":%d}' \
			"$C" "$m" "${bmed/-/null}" "${bmin/-/null}" "${bmax/-/null}" "$bn" "$brss")")
		rss=$(awk -v r="$brss" 'BEGIN{printf "%.0f", r / 1024}')
		read -r kind limit <<<"$(target "$C" "$m")"
		row="| $C | $m | $(cell "$bmed" "$bmin" "$bmax")"
		dr=-
		if [ "$PEERS" = 1 ]; then
			for peer in docker buildah; do
				read -r pmed pmin pmax pn prss <<<"$(stats "$C" "$peer" "$m")"
				if [ "$pn" = 0 ]; then
					row="$row | – | –"
					continue
				fi
				JCELLS+=("$(printf '{"case":"%s","mode":"%s","tool":"%s","median_s":%s,"min_s":%s,"max_s":%s,"runs":%d,"peak_rss_kib":%d,"ratio_builder_to_peer":%s}' \
					"$C" "$m" "$peer" "$pmed" "$pmin" "$pmax" "$pn" "$prss" "$(ratio "$bmed" "$pmed" | sed 's/^-$/null/')")")
				r=$(ratio "$bmed" "$pmed")
				[ "$peer" = docker ] && dr=$r
				row="$row | $(cell "$pmed" "$pmin" "$pmax") | **$r**"
			done
		fi
		tgt= v=
		case $kind in
		ratio) tgt="≤ $limit × Docker" && v=$(verdict "$dr" "$limit") ;;
		seconds) tgt="≤ $limit s (0.2 × BuildKit v0.32's $BK_OCI_REF s)" && v=$(verdict "$bmed" "$limit") ;;
		esac
		if [ "$C" = bigctx ] || [ "$C" = runheavy ]; then
			tgt="${tgt:+$tgt; }RSS ≤ 150"
			rv=$(verdict "$rss" 150)
			v="${v:+$v; }$rv"
		fi
		echo "$row | $rss | $tgt | $v |"
	done
done
echo
echo "Docker's peak RSS is dockerd + containerd sampled every 0.1 s; builder's and buildah's from GNU time."
if [[ " $CASES " == *" runheavy "* ]]; then
	echo "cold-oci: builder cold build of runheavy written as an OCI tarball with gzip layers;"
	echo "Docker 20.10's embedded BuildKit has no oci exporter, so the reference is upstream BuildKit's $BK_OCI_REF s."
fi

{
	printf '{"date":"%s","cores":%d,"load_before":"%s","load_after":"%s","n":%d,"cold_n":%d,"peers":%s,"cases":"%s",\n' \
		"$(date -u +%FT%TZ)" "$(nproc)" "$LOAD0" "$LOAD1" "$N" "$COLD_N" "$([ "$PEERS" = 1 ] && echo true || echo false)" "$CASES"
	printf ' "cells":[\n  %s\n ],\n' "$(IFS=$'\n'; echo "${JCELLS[*]}" | paste -sd, | sed 's/},{/},\n  {/g')"
	printf ' "samples":[\n'
	awk -F, '{printf "%s  {\"case\":\"%s\",\"tool\":\"%s\",\"mode\":\"%s\",\"iter\":%d,\"seconds\":%s,\"peak_rss_kib\":%d,\"status\":\"%s\"}", (NR > 1 ? ",\n" : ""), $1, $2, $3, $4, $5, $6, $7}' "$SAMPLES"
	printf '\n ]}\n'
} >"$JSON"
log "wrote $JSON (samples in $SAMPLES)"
