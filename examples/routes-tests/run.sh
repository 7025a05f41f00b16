#!/bin/sh
# Tests for routes.yaml: each line runs `letterbox routes test` on a sample
# message and fails if the matching routes differ from the expectation.
# Usage: sh examples/routes-tests/run.sh [path/to/letterbox]
set -eu
letterbox=${1:-letterbox}
cd "$(dirname "$0")"
"$letterbox" routes check routes.yaml
"$letterbox" routes test routes.yaml invoice.eml --expect invoices
"$letterbox" routes test routes.yaml ticket-reply.eml --expect support-tickets
"$letterbox" routes test routes.yaml newsletter-reply.eml --expect archive
# Bulk senders are refused at RCPT time: no route runs.
"$letterbox" routes test routes.yaml newsletter-reply.eml --mail-from news@bulk-mailer.example --expect-none
echo "routes tests: all passed"
