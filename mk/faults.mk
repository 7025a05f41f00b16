# Fault tests (issue 7): letterbox dev as a child process on versitygw,
# killed, starved of its store and of its receivers, fed duplicate events;
# then every message answered 250 must be stored and delivered. See
# docs/reliability.md. Included by the root Makefile (-include mk/*.mk).

FAULTS_OUT ?= $(or $(TMPDIR),/tmp)/letterbox-faults

.PHONY: test-faults

## test-faults: the fault scenario and the bug reproductions (~3 min); logs of the client, receivers, pipeline and faults under $(FAULTS_OUT)/_artifacts
test-faults: tools
	@mkdir -p "$(FAULTS_OUT)"
	CI=$${CI:-1} $(GO) test -count=1 -v -timeout 10m -artifacts -outputdir "$(FAULTS_OUT)" ./internal/e2e/
