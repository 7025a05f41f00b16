# template.yaml's checks (issue 13). The project's own rules (IAM least
# privilege, the queue and retry invariants, sizes, the build) are Go tests
# in infra/ (make test); whether the template is valid CloudFormation and
# SAM (resource types, properties and their values, references, GetAtt
# attributes, conditions, unused conditions and mappings) is cfn-lint's
# job, pinned in mk/infra.tools. Included by the root Makefile.

.PHONY: lint-template

CFN_LINT_VERSION := $(shell sed -n 's/^CFN_LINT_VERSION=//p' mk/infra.tools)
# The pinned cfn-lint: on PATH, or in the virtualenv mk/infra.tools makes.
CFN_LINT := $(firstword $(wildcard $(CURDIR)/.tools/cfn-lint/bin/cfn-lint) cfn-lint)

## lint-template: cfn-lint (the version pinned in mk/infra.tools) over template.yaml, after the SAM transform; fails on any error or warning, or when that version is missing (make tools installs it where it can)
lint-template:
	@v=$$($(CFN_LINT) --version 2>/dev/null); \
	if [ "$$v" != "cfn-lint $(CFN_LINT_VERSION)" ]; then \
		echo "lint-template: needs cfn-lint $(CFN_LINT_VERSION) (Python; pip install cfn-lint==$(CFN_LINT_VERSION)), found: $${v:-none}; see mk/infra.tools" >&2; exit 1; \
	fi; \
	echo "$$v: template.yaml"
	$(CFN_LINT) --format parseable -- template.yaml
