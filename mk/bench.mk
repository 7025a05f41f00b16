# All benchmarks (issue 7): one command runs the gateway, parse and
# end-to-end benchmarks, each beside its peers in the same run, writes
# their sections of docs/benchmarks.md and draws the charts in docs/.
# Included by the root Makefile. Benchmarks are never timed tests: on these
# shared 2-core machines, read medians and ratios from one run.
#
# bench/ is a module of its own (bench/go.mod, replacing letterbox with this
# checkout), so its dependencies (gonum/plot, enmime) stay out of
# letterbox's go.mod. Each program is built there into bin/bench/ and run
# from the repository's root, where it finds the checkout it measures.

.PHONY: bench charts bench-smtp test-bench vet-bench

BENCH_BIN := $(CURDIR)/bin/bench
# bench_build builds bench/PROGRAM into bin/bench/PROGRAM.
bench_build = cd bench && $(GO) build -o $(BENCH_BIN)/$(1) ./$(1)

## bench: bench-smtp, bench-parse and bench-e2e, then the charts (~45 min)
bench: bench-smtp bench-parse bench-e2e charts

## charts: draw docs/smtp-throughput-*.png and docs/e2e-latency.png from the benchmarks' CSV files
charts:
	$(call bench_build,charts)
	$(BENCH_BIN)/charts -smtp docs/smtp-throughput.csv -e2e docs/e2e-latency.csv -out docs

## bench-smtp: the gateway on the embedded store beside smtp-sink, a private Postfix and Haraka (to disk, fsync), driven by smtp-source (needs Debian's postfix, root for the Postfix peer, npm for Haraka). BENCH_SMTP_FLAGS="-runs 5 -out FILE" to change it.
BENCH_SMTP_FLAGS ?= -csv docs/smtp-throughput.csv -docs docs/benchmarks.md
bench-smtp: haraka
	$(call bench_build,smtp)
	PATH="/usr/sbin:$$PATH" $(BENCH_BIN)/smtp -haraka $(HARAKA_DIR) $(BENCH_SMTP_FLAGS)

# Haraka, the Node.js MTA, pinned with its dependencies by
# bench/smtp/haraka/package-lock.json and installed from npm with npm ci into
# .tools/haraka (bench/smtp/haraka also has the queue plugin that writes
# each message to a file and fsyncs it before answering 250). To move to
# another version, change HARAKA_VERSION, package.json and harakaVersion in
# bench/smtp/haraka.go, and run npm install --package-lock-only there.
HARAKA_VERSION := 3.3.4
HARAKA_DIR := $(CURDIR)/.tools/haraka
.PHONY: haraka
haraka:
	@if ! cmp -s bench/smtp/haraka/package-lock.json $(HARAKA_DIR)/package-lock.json || \
		[ "$$(node -p "require('$(HARAKA_DIR)/node_modules/Haraka/package.json').version" 2>/dev/null)" != "$(HARAKA_VERSION)" ]; then \
		command -v npm >/dev/null || { echo "bench-smtp: npm is needed to install Haraka $(HARAKA_VERSION)" >&2; exit 1; }; \
		echo "bench-smtp: Haraka@$(HARAKA_VERSION) into $(HARAKA_DIR) (npm ci)"; \
		mkdir -p $(HARAKA_DIR) && cp bench/smtp/haraka/package.json bench/smtp/haraka/package-lock.json $(HARAKA_DIR)/ && \
		npm ci --prefix $(HARAKA_DIR) --no-audit --no-fund --omit=optional --loglevel=error; \
	fi

## test-bench: the bench module's go.mod is tidy against letterbox's, then its vet and tests (part of make test)
test-bench:
	@cd bench && $(GO) mod tidy -diff >/dev/null || { \
		echo "test-bench: bench/go.mod or go.sum does not follow letterbox's go.mod; run: cd bench && go mod tidy" >&2; exit 1; }
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...

vet-bench:
	cd bench && $(GO) vet ./...
