# Parsing (issue 4): benchmark and fuzzing of internal/parser.
.PHONY: bench-parse fuzz-parse

BENCH_COUNT ?= 10
FUZZ_TIME ?= 3m
BENCH_PARSE_OUT ?= $(CURDIR)/.tools/bench-parse.out

## bench-parse: parse throughput (MB/s) and allocations per message on a mixed
## corpus, letterbox beside enmime in the same run; prints medians and ratios
bench-parse:
	@mkdir -p $(dir $(BENCH_PARSE_OUT))
	$(GO) test -run '^$$' -bench '^BenchmarkParse$$' -benchmem -count $(BENCH_COUNT) ./internal/parser/ | tee $(BENCH_PARSE_OUT)
	@awk '/^BenchmarkParse\// { \
		name = $$1; sub(/-[0-9]+$$/, "", name); sub(/^BenchmarkParse\//, "", name); \
		for (i = 3; i < NF; i++) { if ($$(i+1) == "MB/s") mbs[name] = mbs[name] " " $$i; if ($$(i+1) == "allocs/msg") am[name] = am[name] " " $$i; if ($$(i+1) == "ns/op") ns[name] = ns[name] " " $$i } \
	} \
	function median(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t } \
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 } \
	END { printf "\nmedians of %d runs\n%-10s %10s %12s %12s\n", $(BENCH_COUNT), "parser", "MB/s", "allocs/msg", "ms/corpus"; \
		for (n in mbs) { m[n] = median(mbs[n]); a[n] = median(am[n]); printf "%-10s %10.1f %12.0f %12.2f\n", n, m[n], a[n], median(ns[n]) / 1e6 } \
		if (m["enmime"] > 0) printf "ratio letterbox/enmime: throughput %.2fx, allocs/msg %.2fx\n", m["letterbox"] / m["enmime"], a["letterbox"] / a["enmime"] }' $(BENCH_PARSE_OUT)

## fuzz-parse: run each parser fuzz target for FUZZ_TIME
fuzz-parse:
	for t in FuzzParse FuzzDecodeWords FuzzParseAddressList FuzzParseMediaHeader FuzzStripAndHTML; do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZ_TIME) ./internal/parser/ || exit 1; \
	done
