# The inspector (issue 15): its listing benchmark.
.PHONY: bench-inspect

BENCH_INSPECT_TIME ?= 3s

## bench-inspect: the inspector's first page, searches and index sync with 100,000 messages,
## in the file store and in versitygw (~15 min); medians into docs/benchmarks.md
bench-inspect:
	$(GO) run ./bench/inspect -benchtime $(BENCH_INSPECT_TIME) -docs docs/benchmarks.md
