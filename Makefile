# letterbox — see README.md. Targets for each area live in mk/*.mk.
GO ?= go
GOBIN_DIR := $(CURDIR)/.tools/bin
export PATH := $(GOBIN_DIR):$(PATH)

.PHONY: dev test test-short vet tools letterbox
.DEFAULT_GOAL := letterbox

letterbox:
	$(GO) build -o bin/letterbox ./cmd/letterbox

## dev: run the whole pipeline locally on the embedded store, serving examples/routes.yaml
dev: letterbox
	./bin/letterbox dev --routes examples/routes.yaml

## test: the whole test suite, installing the programs it runs against first
test: tools
	$(GO) vet ./...
	CI=$${CI:-1} $(GO) test -count=1 -timeout 20m ./...
	@$(GO) test -count=1 -run '^TestSPFSuite$$' -v ./internal/mailauth/ | grep '^SPF suite:'
	$(MAKE) --no-print-directory test-bench  # bench/ is its own module (mk/bench.mk)

## test-short: unit tests only, no external programs required
test-short:
	$(GO) test -short ./...
	cd bench && $(GO) test -short ./...

vet:
	$(GO) vet ./...
	cd bench && $(GO) vet ./...

## tools: install the real peers the tests use (versitygw; Debian packages if root)
tools:
	./.ci/install-tools

-include mk/*.mk
