package pipeline

// Secrets: the deliver function's variables may come from Secrets Manager
// (LoadSecrets), and so may the SRS secret (LoadForwardConfig) and the
// attachment links' key (links.go). Each secret is read once, at cold
// start; errors name the secret's ARN and the variable, never a value.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/letterboxmail/letterbox/internal/forward"
)

// SecretsAPI is the one Secrets Manager call LoadSecrets and
// LoadForwardConfig make; the SDK's *secretsmanager.Client implements it.
// It is the seam for the tests, which cannot run Secrets Manager: they give
// it the real client pointed at a local server that answers GetSecretValue.
type SecretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// LoadForwardConfig reads the forward action's configuration from the
// environment, or returns nil when forwarding is not configured
// (LETTERBOX_SRS_DOMAIN unset: forward actions then fail permanently with a
// clear error). The caller sets Store and Policy. `letterbox dev` reads the
// same variables, with secrets nil:
//
//	LETTERBOX_SRS_DOMAIN        the SRS domain (required to forward)
//	LETTERBOX_SRS_SECRET        the SRS secret, or instead
//	LETTERBOX_SRS_SECRET_ARN    a Secrets Manager secret holding it (the stack's)
//	LETTERBOX_SRS_OLD_SECRETS   comma-separated, still accepted
//	LETTERBOX_ARC_KEY_FILE      ARC sealing (optional): a PEM private key file, or instead
//	LETTERBOX_ARC_KEY           the PEM text itself (e.g. from LETTERBOX_SECRETS_ARN)
//	LETTERBOX_ARC_SELECTOR, LETTERBOX_ARC_DOMAIN  where its public key is published
//	LETTERBOX_FORWARD_HELO, LETTERBOX_FORWARD_TIMEOUT
//
// With LETTERBOX_SRS_SECRET_ARN the secret is read once, here, at cold
// start: its AWSCURRENT version signs, and its AWSPREVIOUS version, when
// there is one, joins SRSOldSecrets (first), so that addresses minted
// before a rotation still verify. Setting both LETTERBOX_SRS_SECRET and
// LETTERBOX_SRS_SECRET_ARN is refused, rather than one silently winning;
// so is LETTERBOX_SRS_SECRET_ARN without LETTERBOX_SRS_DOMAIN, or with
// secrets nil, and both LETTERBOX_ARC_KEY and LETTERBOX_ARC_KEY_FILE.
// Errors name the secret's ARN, never its value.
func LoadForwardConfig(ctx context.Context, getenv func(string) string, secrets SecretsAPI) (*forward.Config, error) {
	domain, arn := getenv("LETTERBOX_SRS_DOMAIN"), getenv("LETTERBOX_SRS_SECRET_ARN")
	if domain == "" {
		if arn != "" {
			return nil, errors.New("LETTERBOX_SRS_SECRET_ARN is set but LETTERBOX_SRS_DOMAIN is not: set both to forward, or neither")
		}
		return nil, nil
	}
	cfg := &forward.Config{SRSDomain: domain, SRSSecret: getenv("LETTERBOX_SRS_SECRET"),
		Resolver: getenv("LETTERBOX_RESOLVER"), HELO: getenv("LETTERBOX_FORWARD_HELO"), Getenv: getenv}
	if arn != "" {
		switch {
		case cfg.SRSSecret != "":
			return nil, errors.New("both LETTERBOX_SRS_SECRET and LETTERBOX_SRS_SECRET_ARN are set: set one (an old secret goes in LETTERBOX_SRS_OLD_SECRETS)")
		case secrets == nil:
			return nil, errors.New("LETTERBOX_SRS_SECRET_ARN is read only by the functions on AWS: set LETTERBOX_SRS_SECRET instead")
		}
		current, previous, err := secretVersions(ctx, secrets, arn, "SRS secret", "LETTERBOX_SRS_SECRET_ARN")
		if err != nil {
			return nil, err
		}
		cfg.SRSSecret = current
		if previous != "" && previous != current {
			cfg.SRSOldSecrets = append(cfg.SRSOldSecrets, previous)
		}
	}
	for _, s := range strings.Split(getenv("LETTERBOX_SRS_OLD_SECRETS"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.SRSOldSecrets = append(cfg.SRSOldSecrets, s)
		}
	}
	if v := getenv("LETTERBOX_FORWARD_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("LETTERBOX_FORWARD_TIMEOUT: %w", err)
		}
		cfg.Timeout = d
	}
	file, text := getenv("LETTERBOX_ARC_KEY_FILE"), getenv("LETTERBOX_ARC_KEY")
	selector, arcDomain := getenv("LETTERBOX_ARC_SELECTOR"), getenv("LETTERBOX_ARC_DOMAIN")
	var err error
	switch {
	case file != "" && text != "":
		return nil, errors.New("both LETTERBOX_ARC_KEY and LETTERBOX_ARC_KEY_FILE are set: set one")
	case file != "":
		if cfg.ARC, err = forward.LoadARCKey(file, selector, arcDomain); err != nil {
			return nil, fmt.Errorf("ARC key (LETTERBOX_ARC_KEY_FILE): %w", err)
		}
	case text != "":
		if cfg.ARC, err = forward.ParseARCKey([]byte(text), selector, arcDomain); err != nil {
			return nil, fmt.Errorf("ARC key (LETTERBOX_ARC_KEY): %w", err)
		}
	}
	return cfg, nil
}

// NoARC is routing.Limits.NoARC for a forwarding configuration: why a
// forward action's arc_seal cannot be honoured (no ARC key), or "" when it
// can.
func NoARC(fwd *forward.Config) string {
	if fwd != nil && fwd.ARC != nil {
		return ""
	}
	return "no ARC key is configured: set LETTERBOX_ARC_KEY (or LETTERBOX_ARC_KEY_FILE), LETTERBOX_ARC_SELECTOR and LETTERBOX_ARC_DOMAIN, or remove arc_seal (see docs/forwarding.md)"
}

// LoadSecrets returns getenv with the variables of the Secrets Manager
// secret LETTERBOX_SECRETS_ARN names added, or getenv itself when that
// variable is unset. The secret is the operator's (the stack's
// DeliverSecretArn parameter): a JSON object whose keys are variable names
// and whose values are strings, e.g.
//
//	{"ACME_WEBHOOK_SECRET": "whsec_...", "RELAY_PASSWORD": "...", "LETTERBOX_ARC_KEY": "-----BEGIN PRIVATE KEY-----\n..."}
//
// so that a webhook's secret_env, a forward's password_env and
// LoadForwardConfig's variables (LETTERBOX_ARC_KEY) find them without the
// values being in the function's configuration. Its AWSCURRENT version is
// read once, here, at cold start; a new value takes effect at the next cold
// start.
//
// A key that getenv also has (non-empty) is refused, rather than one of
// the two silently winning: each name has one place. So are a secret that
// cannot be read or has no SecretString, one that is not a JSON object of
// strings, an empty key, and LETTERBOX_SECRETS_ARN with secrets nil
// (`letterbox dev`). Errors name the ARN and the key, never a value.
func LoadSecrets(ctx context.Context, getenv func(string) string, secrets SecretsAPI) (func(string) string, error) {
	arn := getenv("LETTERBOX_SECRETS_ARN")
	if arn == "" {
		return getenv, nil
	}
	if secrets == nil {
		return nil, errors.New("LETTERBOX_SECRETS_ARN is read only by the functions on AWS: set the variables themselves instead")
	}
	where := fmt.Sprintf("secret %s (LETTERBOX_SECRETS_ARN)", arn)
	out, err := secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if aws.ToString(out.SecretString) == "" {
		return nil, fmt.Errorf("%s: no SecretString (a binary or empty secret); want a JSON object of strings", where)
	}
	vars, err := secretVars(*out.SecretString)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if getenv(k) != "" {
			return nil, fmt.Errorf("%s: %s is also set in the function's environment: set it in one place", where, k)
		}
	}
	return func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return getenv(k)
	}, nil
}

// secretVars decodes a JSON object of strings. Its errors name keys and
// JSON types, never values: encoding/json's own messages may quote the
// text, so they are not passed on.
func secretVars(s string) (map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return nil, fmt.Errorf("not valid JSON (syntax error at byte %d); want a JSON object of strings", syntax.Offset)
		}
		return nil, errors.New("not a JSON object; want a JSON object of strings")
	}
	if raw == nil {
		return nil, errors.New("not a JSON object (null); want a JSON object of strings")
	}
	vars := make(map[string]string, len(raw))
	for k, v := range raw {
		if k == "" {
			return nil, errors.New("an empty key; keys are variable names")
		}
		var str string
		if v[0] != '"' || json.Unmarshal(v, &str) != nil {
			return nil, fmt.Errorf("the value of %s is %s; want a string", k, jsonType(v))
		}
		vars[k] = str
	}
	return vars, nil
}

// jsonType names the type of a JSON value by its first byte.
func jsonType(v json.RawMessage) string {
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// secretVersions reads the AWSCURRENT and, if it exists, the AWSPREVIOUS
// version of the secret arn (the SRS key, the link key). A secret that was
// never rotated has no AWSPREVIOUS version: previous is then "". Errors
// say what the secret is and which variable named it, never a value.
func secretVersions(ctx context.Context, api SecretsAPI, arn, what, variable string) (current, previous string, err error) {
	get := func(stage string) (string, error) {
		out, err := api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn), VersionStage: aws.String(stage)})
		if err != nil {
			return "", err
		}
		if aws.ToString(out.SecretString) == "" {
			return "", errors.New("the version has no SecretString (a binary or empty secret)")
		}
		return *out.SecretString, nil
	}
	if current, err = get("AWSCURRENT"); err != nil {
		return "", "", fmt.Errorf("%s %s (%s), version AWSCURRENT: %w", what, arn, variable, err)
	}
	previous, err = get("AWSPREVIOUS")
	if notFound := (*smtypes.ResourceNotFoundException)(nil); errors.As(err, &notFound) {
		return current, "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("%s %s (%s), version AWSPREVIOUS: %w", what, arn, variable, err)
	}
	return current, previous, nil
}
