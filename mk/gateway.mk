# SMTP gateway targets. Included by the root Makefile (-include mk/*.mk).

.PHONY: gateway

## gateway: build the SMTP gateway binary into bin/smtpgw
gateway:
	$(GO) build -o bin/smtpgw ./smtpgw/cmd/smtpgw
