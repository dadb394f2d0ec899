# Makefile for consensus. `make test` is what CI runs (.ci/run).

GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 20000x
DURATION ?= 5m

.PHONY: all build test test-js test-short vet lint fuzz soak run clean bench-etcd bench-js bench-etcd-tool

all: build

build:
	$(GO) build -o bin/consensus ./cmd/consensus

## test: vet, then every test with the race detector (what CI runs).
test: vet
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	cd bench/etcd && $(GO) vet ./... && $(GO) test -count=1 ./...
	cd bench/etcdtool && $(GO) vet ./...
	$(MAKE) test-js

## test-js: the JavaScript client's tests (clients/js, Node 20+) against
## 3-member clusters of bin/consensus; installs its packages from the
## committed lockfile (npm ci) when clients/js/node_modules is missing.
test-js: build
	cd clients/js && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && \
	  CONSENSUS_BIN=$(CURDIR)/bin/consensus npm test

## test-short: skip the multi-process tests.
test-short:
	$(GO) test -race -count=1 -short $(PKGS)

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags stagetrace $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## lint: staticcheck (installed on demand).
lint:
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@latest
	staticcheck $(PKGS)

## fuzz: run each fuzz target for FUZZTIME beyond its seed corpus: a count
## of inputs (20000x) by default. A duration (FUZZTIME=1m) works too, but Go
## 1.26's fuzzer can end a timed run with a spurious "context deadline
## exceeded" on a busy machine (golang/go#75804, fixed in Go 1.27), so CI
## uses a count.
fuzz:
	$(GO) test -run XXX -fuzz '^FuzzDecodeFrame$$' -fuzztime $(FUZZTIME) ./transport/
	$(GO) test -run XXX -fuzz '^FuzzHTTPRequest$$' -fuzztime $(FUZZTIME) ./server/
	$(GO) test -run XXX -fuzz '^FuzzWSFrame$$' -fuzztime $(FUZZTIME) ./server/
	$(GO) test -run XXX -fuzz '^FuzzDecodeRequests$$' -fuzztime $(FUZZTIME) ./api/
	$(GO) test -run XXX -fuzz '^FuzzWatchElements$$' -fuzztime $(FUZZTIME) ./api/
	$(GO) test -run XXX -fuzz '^FuzzJSONRefusal$$' -fuzztime $(FUZZTIME) ./server/
	$(GO) test -run XXX -fuzz '^FuzzWatchStream$$' -fuzztime $(FUZZTIME) ./client/
	$(GO) test -run XXX -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./storage/
	$(GO) test -run XXX -fuzz '^FuzzReadNodeState$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run XXX -fuzz '^FuzzApply$$' -fuzztime $(FUZZTIME) ./kv/
	$(GO) test -run XXX -fuzz '^FuzzRestore$$' -fuzztime $(FUZZTIME) ./kv/
	$(GO) test -run XXX -fuzz '^FuzzValueRecord$$' -fuzztime $(FUZZTIME) ./kv/
	$(GO) test -run XXX -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./internal/msgpackcheck/
	$(GO) test -run XXX -fuzz '^FuzzReadBackup$$' -fuzztime $(FUZZTIME) ./backup/

## soak: the linearizability test under faults (partitions, crashes,
## lossy links) for DURATION, seed after seed; prints the figures at the end.
soak:
	$(GO) test -race -count=1 -v -timeout 0 -run '^TestLinearizability$$' ./internal/harness/ -soak=$(DURATION)

## run: a local 3-node cluster.
run:
	$(GO) run ./cmd/consensus up

clean:
	rm -rf bin data

## bench-etcd: consensus side by side with etcd on this machine (etcd 3.7.3
## built from bench/etcd's go.mod; ETCD=debian for Debian's etcd-server);
## BENCH_DURATION per cell, default 5s.
bench-etcd:
	bash scripts/bench-etcd.sh

## bench-js: the JavaScript client's writes and linearizable reads at
## c=1,64,256 beside the Go client's, on one 3-node cluster in one run
## (RUNS rounds, default 3; BENCH_DURATION seconds per cell, default 5).
bench-js:
	bash scripts/bench-js.sh

## bench-etcd-tool: etcd's own benchmark tool (tools/benchmark, built from
## etcd v3.6.8 by bench/etcdtool) against etcd 3.7.3 and consensus: put,
## range, txn-put and txn-mixed, RUNS rounds (default 3, the order of the
## systems alternated) of TOTAL requests per command.
bench-etcd-tool:
	bash scripts/bench-etcd-tool.sh
