# nodebatch — local stack, tests and checks. See README.md and docs/config.md.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
GO  ?= go
BIN := .nodebatch/bin

.PHONY: help setup k8s-bin stack run test lint

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: ## check prerequisites (Go, Java 17, emulators); runs scripts/setup.d/* hooks
	@scripts/setup.sh

k8s-bin: ## build etcd, kube-apiserver, kubectl into .nodebatch/bin (once, ~10 min cold)
	@emulators/k8s/build.sh $(BIN)

$(BIN)/nodebatch-stack: FORCE
	@$(GO) build -o $@ ./emulators/cmd/stack

stack: setup k8s-bin $(BIN)/nodebatch-stack ## run the local stack in the foreground (Ctrl-C stops it)
	@exec $(BIN)/nodebatch-stack -build=false

run: setup k8s-bin $(BIN)/nodebatch-stack ## run the whole product locally (for now: the stack)
	@exec $(BIN)/nodebatch-stack -build=false -product

test: setup k8s-bin $(BIN)/nodebatch-stack ## start one shared stack, go test -race ./..., stop the stack
	@scripts/test.sh

lint: ## go vet and govulncheck
	$(GO) vet ./...
	$(GO) run golang.org/x/vuln/cmd/govulncheck ./...

.PHONY: FORCE
FORCE:
