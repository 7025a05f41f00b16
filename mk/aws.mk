# The deployed stack on this machine (issue 11): template.yaml's settings,
# the real bootstraps under the Lambda Runtime Interface Emulator, sqslocal,
# versitygw and the smtpgw binary. See internal/awsstack and docs/deploy.md.
# Included by the root Makefile; .ci/run runs `make test-aws` after `make test`.
# The stack's tests carry the awsstack build tag, so `make test`
# (go test ./...) does not run them; the package's unit tests carry
# !awsstack and run in `make test` only. CI runs each test once.

# Under .tools/ (git-ignored), so that checkouts running it at once do not share binaries.
AWS_OUT ?= $(CURDIR)/.tools/aws
AWS_BIN := $(AWS_OUT)/bin
HOST_GOARCH := $(shell $(GO) env GOARCH)
# AWS_TEST_FLAGS passes options to go test, e.g. AWS_TEST_FLAGS="-run TestEndToEnd".
AWS_TEST_FLAGS ?=

.PHONY: test-aws build-aws

## build-aws: make build's Lambda and gateway recipes for the host's architecture, into $(AWS_BIN)
build-aws:
	@mkdir -p "$(AWS_BIN)"
	for f in $(LAMBDA_FUNCTIONS); do \
		$(MAKE) --no-print-directory build-$$f LAMBDA_GOARCH=$(HOST_GOARCH) ARTIFACTS_DIR="$(AWS_BIN)/$$f" || exit 1; \
	done
	GOARCH=$(HOST_GOARCH) $(GATEWAY_GOBUILD) -o "$(AWS_BIN)/smtpgw" ./smtpgw/cmd/smtpgw

## test-aws: the stack of template.yaml run locally: end to end, faults, memory and time, cost (~10 min); logs under $(AWS_OUT)/_artifacts
test-aws: tools build-aws
	$(GO) vet -tags awsstack ./internal/awsstack/
	LETTERBOX_AWS_BIN="$(AWS_BIN)" LETTERBOX_AWS_ARTIFACTS="$(AWS_OUT)/_artifacts" CI=$${CI:-1} \
		$(GO) test -tags awsstack -count=1 -v -timeout 15m $(AWS_TEST_FLAGS) ./internal/awsstack/
