# SMTP gateway targets. Included by the root Makefile (-include mk/*.mk).

.PHONY: gateway bench-smtp

## gateway: build the SMTP gateway binary into bin/smtpgw
gateway:
	$(GO) build -o bin/smtpgw ./smtpgw/cmd/smtpgw

## bench-smtp: benchmark the gateway against smtp-sink and a private Postfix with smtp-source (needs Debian's postfix; root for the Postfix peer). BENCH_SMTP_FLAGS="-runs 5 -out FILE" to change it.
BENCH_SMTP_FLAGS ?= -csv docs/smtp-throughput.csv -docs docs/benchmarks.md
bench-smtp:
	PATH="/usr/sbin:$$PATH" $(GO) run ./bench/smtp $(BENCH_SMTP_FLAGS)
