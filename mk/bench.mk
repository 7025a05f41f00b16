# All benchmarks (issue 7): one command runs the gateway, parse and
# end-to-end benchmarks, each beside its peers in the same run, writes
# their sections of docs/benchmarks.md and draws the charts in docs/.
# Included by the root Makefile. Benchmarks are never timed tests: on these
# shared 2-core machines, read medians and ratios from one run.

.PHONY: bench charts

## bench: bench-smtp, bench-parse and bench-e2e, then the charts (~45 min)
bench: bench-smtp bench-parse bench-e2e charts

## charts: draw docs/smtp-throughput-*.png and docs/e2e-latency.png from the benchmarks' CSV files
charts:
	$(GO) run ./bench/charts -smtp docs/smtp-throughput.csv -e2e docs/e2e-latency.csv -out docs
