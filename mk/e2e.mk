# End-to-end latency benchmark (issue 5): the 250 reply to the webhook's
# arrival through letterbox dev, at fixed rates and stepped up to the
# highest rate sustained without a growing backlog. See bench/e2e and the
# e2e section of docs/benchmarks.md. Included by the root Makefile.

.PHONY: bench-e2e bench-e2e-profile

# E2E_FLAGS passes options to bench/e2e, e.g. E2E_FLAGS="-runs 1 -duration 20s".
E2E_FLAGS ?=
# E2E_SPANS=on keeps letterbox dev's span file (traces.jsonl) on, to
# measure it; by default the benchmark runs with tracing off.
E2E_SPANS ?= off

## bench-e2e: p50/p95/p99 at 50 and 200 msg/s for 60 s and the highest sustained rate, 3 runs, file store on disk and on tmpfs (~25 min); writes docs/benchmarks.md (e2e section) and docs/e2e-latency.csv
bench-e2e:
	LETTERBOX_SPANS=$(if $(filter on,$(E2E_SPANS)),,off) $(GO) run ./bench/e2e -docs $(E2E_FLAGS)

## bench-e2e-profile: one 60 s run at 200 msg/s with the pipeline in-process under a CPU profile (bench/e2e/devprof); prints the top functions
bench-e2e-profile:
	$(GO) run ./bench/e2e -rates 200 -cpuprofile $(or $(TMPDIR),/tmp)/letterbox-e2e-cpu.prof $(E2E_FLAGS)
