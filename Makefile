# nodebatch — local stack, tests and checks. See README.md and docs/config.md.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
GO  ?= go
BIN := .nodebatch/bin

.PHONY: help setup setup-base k8s-bin product-bin cli krew stack run test lint fuzz impactbench

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: ## check prerequisites (Go, Java 17, emulators) and run scripts/setup-*.sh hooks (browser tests)
	@bash scripts/setup.sh

setup-base: ## check only what the local stack needs
	@bash scripts/setup.sh --base

k8s-bin: ## build etcd, kube-apiserver, kubectl into .nodebatch/bin (once, ~10 min cold)
	@bash emulators/k8s/build.sh $(BIN)

$(BIN)/nodebatch-stack: FORCE
	@$(GO) build -o $@ ./emulators/cmd/stack

stack: setup-base k8s-bin $(BIN)/nodebatch-stack ## run the local stack in the foreground (Ctrl-C stops it)
	@exec $(BIN)/nodebatch-stack -build=false

PRODUCT_CMDS := ./functions/cmd/serve ./relay/cmd/relay ./emulators/cmd/pushdeliver \
	./emulators/cmd/oidcdev ./emulators/cmd/devtoken ./emulators/cmd/scheduler

product-bin: FORCE ## build the product's binaries into .nodebatch/bin
	@$(GO) build -o $(BIN)/ $(PRODUCT_CMDS)

cli: ## build kubectl-nodebatch into .nodebatch/bin (put it on PATH: kubectl nodebatch ...)
	@$(GO) build -o $(BIN)/kubectl-nodebatch ./relay/cmd/kubectl-nodebatch

# krew cross-builds kubectl-nodebatch per platform and writes the krew
# manifest with each archive's sha256 (relay/cmd/kubectl-nodebatch/krew).
krew: ## release archives + krew manifest into .nodebatch/dist (VERSION=v1.2.3, KREW_FLAGS e.g. -platforms linux/amd64)
	@$(GO) run ./relay/cmd/kubectl-nodebatch/krew -version "$(VERSION)" -out .nodebatch/dist $(KREW_FLAGS)

run: setup-base k8s-bin $(BIN)/nodebatch-stack product-bin ## run the whole product locally: API :8080, relay + UI :8090
	@exec $(BIN)/nodebatch-stack -build=false -product

test: setup k8s-bin $(BIN)/nodebatch-stack ## start one shared stack, go test -race ./..., stop the stack
	@bash scripts/test.sh

# bench starts its own stack on free ports (like make test), seeds bench-only
# nodes, runs the product in-process and prints the table of issue 8.
# NODEBATCH_BENCH_NODES (default 1000); BENCH_FLAGS e.g. "-repeat 5 -rows 4,6 -cpuprofile .nodebatch/bench.pprof".
bench: setup-base k8s-bin ## throughput + progress delay vs kubectl and client-go; table to stdout, JSON to .nodebatch/bench.json
	@ulimit -n "$$(ulimit -Hn)"; $(GO) run ./emulators/cmd/bench -bin-dir $(BIN) -out .nodebatch/bench.json $(BENCH_FLAGS)

# impactbench times the eviction preview at 1,000 nodes x 20 pods on a private stack (docs/design.md).
impactbench: setup-base k8s-bin ## impact preview of a NoExecute taint on 1,000 nodes x 20 pods; table to stdout
	$(GO) run ./emulators/cmd/impactbench -bin-dir $(BIN) $(IMPACTBENCH_FLAGS)

# fuzz runs every fuzz target in the module (found by grep, so new ones are
# picked up) for FUZZTIME each; make test runs their seed corpora only.
FUZZTIME ?= 30s
fuzz: ## run every fuzz target for FUZZTIME each (default 30s), one after another
	@grep -rn --include='*_test.go' --exclude-dir=node_modules --exclude-dir=k8s -E '^func Fuzz[A-Za-z0-9_]+\(' . \
	  | sed -E 's#^\./(.*)/[^/]+:[0-9]+:func (Fuzz[A-Za-z0-9_]+).*#\1 \2#' | sort -u \
	  | while read -r dir fn; do \
	      echo ">>> $$fn ./$$dir ($(FUZZTIME))"; \
	      $(GO) test -run XXX -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "./$$dir" || exit 1; \
	    done

# govulncheck needs its database: vuln.go.dev by default, or GOVULNDB=file:///path
# (a local copy) where that host cannot be reached.
GOVULNDB ?=
lint: ## go vet and govulncheck (needs vuln.go.dev, or GOVULNDB=file:///db)
	$(GO) vet ./...
	$(GO) run golang.org/x/vuln/cmd/govulncheck $(if $(GOVULNDB),-db $(GOVULNDB)) ./...

.PHONY: FORCE
FORCE:
