# Parsing (issue 4): benchmark and fuzzing of internal/parser.
.PHONY: bench-parse fuzz-parse

BENCH_COUNT ?= 10
FUZZ_TIME ?= 3m

## bench-parse: parse throughput (MB/s) and allocations per message on a mixed
## corpus, letterbox beside enmime in the same run (bench/parse, in the bench
## module); medians and ratios into docs/benchmarks.md
bench-parse:
	$(call bench_build,parse)
	$(BENCH_BIN)/parse -count $(BENCH_COUNT) -docs docs/benchmarks.md

## fuzz-parse: run each parser fuzz target for FUZZ_TIME
fuzz-parse:
	for t in FuzzParse FuzzDecodeWords FuzzParseAddressList FuzzParseMediaHeader FuzzStripAndHTML; do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZ_TIME) ./internal/parser/ || exit 1; \
	done
