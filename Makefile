# builder: `make demo` builds and shows an image; `make test` runs every test.
GO ?= go
BIN := bin/builder

.PHONY: all build demo test test-short vet fmt-check bench clean conformance-docker

all: build

build:
	$(GO) build -o $(BIN) ./cmd/builder

demo:
	scripts/demo.sh

# The whole suite: unit tests with the race detector, then the end-to-end tests, which
# need root and start their own registry.
test: fmt-check vet
	$(GO) test -race -count=1 ./llb/... ./solver/... ./cache/... ./worker/... ./exporter/... ./frontend/... ./internal/...
	$(GO) test -count=1 -timeout 20m ./e2e/...
	$(GO) test -count=1 -run '^$$' -fuzz=FuzzDefinitionDecode -fuzztime=5s ./llb
	$(GO) test -count=1 -run '^$$' -fuzz=FuzzConvert -fuzztime=10s ./frontend/dockerfile

# The Dockerfile conformance cases through Docker's BuildKit as well, to prove their
# expectations (optional: needs docker.io, which this installs; not part of make test).
conformance-docker:
	command -v dockerd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io; }
	BUILDER_CONFORMANCE_DOCKER=1 $(GO) test -count=1 -timeout 20m -run 'TestConformance' ./e2e/

test-short:
	$(GO) test -short ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# make bench = the Go micro-benchmarks, then builder against its peers on the shared corpus
# (scripts/bench.sh: root, ../shared/bench; PEERS=1 adds Docker's BuildKit and buildah,
# N=runs per cell). BENCH_COUNT=10 gives benchstat enough samples.
.PHONY: bench-go bench-peers
bench: bench-go bench-peers

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count $(or $(BENCH_COUNT),1) ./solver/... ./worker/... ./cache/...

bench-peers:
	scripts/bench.sh

clean:
	rm -rf bin .demo
