# Deployable artefacts. Included by the root Makefile (-include mk/*.mk).
#
# SAM's makefile builder (template.yaml: Metadata.BuildMethod: makefile) runs
# `make build-<LogicalId>` with ARTIFACTS_DIR set and deploys what lands in
# $(ARTIFACTS_DIR)/bootstrap. `make build` builds the same artefacts without
# SAM, into bin/, so CI can check that they build.

# Lambda functions: logical id in template.yaml -> Go package.
LAMBDA_FUNCTIONS := IngestFunction DeliverFunction LinkFunction
lambda_pkg_IngestFunction := ./functions/ingest
lambda_pkg_DeliverFunction := ./functions/deliver
lambda_pkg_LinkFunction := ./functions/link

# provided.al2023 on Graviton: a static binary named bootstrap. lambda.norpc
# drops the legacy go1.x RPC server from aws-lambda-go.
LAMBDA_GOARCH ?= arm64
LAMBDA_GOBUILD = CGO_ENABLED=0 GOOS=linux GOARCH=$(LAMBDA_GOARCH) $(GO) build -tags lambda.norpc -trimpath -ldflags "-s -w"

# The gateway container runs on Fargate arm64; amd64 is built too so the
# image can be multi-arch (infra/gateway/Dockerfile builds the same way).
GATEWAY_ARCHES ?= arm64 amd64
GATEWAY_GOBUILD = CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags "-s -w"

.PHONY: build build-lambda build-gateway $(addprefix build-,$(LAMBDA_FUNCTIONS))

## build: every deployable artefact without SAM: bin/lambda/<LogicalId>/bootstrap, bin/smtpgw/linux-<arch>/{smtpgw,healthcheck}, bin/letterbox
build: letterbox build-lambda build-gateway

build-lambda: $(addprefix build-,$(LAMBDA_FUNCTIONS))

# ARTIFACTS_DIR comes from SAM; without it the artefact goes to bin/lambda/<LogicalId>.
$(addprefix build-,$(LAMBDA_FUNCTIONS)): build-%:
	@mkdir -p "$(or $(ARTIFACTS_DIR),$(CURDIR)/bin/lambda/$*)"
	$(LAMBDA_GOBUILD) -o "$(or $(ARTIFACTS_DIR),$(CURDIR)/bin/lambda/$*)/bootstrap" $(lambda_pkg_$*)

build-gateway: $(addprefix build-gateway-linux-,$(GATEWAY_ARCHES))

build-gateway-linux-%:
	GOARCH=$* $(GATEWAY_GOBUILD) -o bin/smtpgw/linux-$*/smtpgw ./smtpgw/cmd/smtpgw
	GOARCH=$* $(GATEWAY_GOBUILD) -o bin/smtpgw/linux-$*/healthcheck ./infra/gateway/healthcheck
