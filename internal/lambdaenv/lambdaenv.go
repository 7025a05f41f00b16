// Package lambdaenv builds, once per Lambda cold start, the clients every
// letterbox function shares, from the environment the SAM template sets:
//
//	LETTERBOX_STORE                  s3://BUCKET[/PREFIX]
//	LETTERBOX_ROUTES                 s3://BUCKET/KEY (reloaded on change) or a bundled file path
//	LETTERBOX_DELIVERY_QUEUE_URL     the delivery queue
//	LETTERBOX_DEAD_LETTER_QUEUE_URL  its dead-letter queue
//	LETTERBOX_RAW_DEAD_LETTER_QUEUE_URL  the raw queue's dead-letter queue (ingest: permanent failures)
//	LETTERBOX_ROUTES_INTERVAL        how often to check the routes for changes (default 30s)
//	LETTERBOX_JOURNAL                all (default) or failures: which deliveries get a store record
//	LETTERBOX_DELIVER_TIMEOUT        the deliver function's timeout in seconds (its Lambda Timeout):
//	                                 the routes' action timeouts are checked against it
//	LETTERBOX_SRS_DOMAIN             set where forwarding is configured; without it, a routes file
//	                                 with a forward action is refused
//
// and, for the deliver function, LETTERBOX_SECRETS_ARN, a Secrets Manager
// secret of further variables (see LoadSecrets), the forward action's
// variables (see LoadForwardConfig) and the attachment links' (see
// LoadLinkSigner; the link function reads only LETTERBOX_STORE and
// LETTERBOX_LINK_KEY_ARN, see LoadLinkHandler). Only main packages call it:
// it is the functions' configuration reader.
package lambdaenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/forward"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/sqsqueue"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storeurl"
)

// Env is what a function needs.
type Env struct {
	Store   store.Store
	Routes  *routing.Live
	Queue   *sqsqueue.Queue
	Journal delivery.Journal
	// Links presigns attachment links (the S3 store); nil for other stores.
	Links store.Presigner
	// AWS is the SDK configuration the clients were built from.
	AWS aws.Config
	// KeyPrefix is the store's prefix in its bucket, as S3 events name keys.
	KeyPrefix string
	// RawDeadLetter sends a raw-queue message that failed for good to
	// LETTERBOX_RAW_DEAD_LETTER_QUEUE_URL (ingest.Handler.DeadLetter); nil
	// when that is unset.
	RawDeadLetter func(ctx context.Context, rec events.SQSMessage) error
}

// Load reads the environment and builds the clients.
func Load(ctx context.Context) (*Env, error) {
	need := func(name string) (string, error) {
		v := os.Getenv(name)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		return v, nil
	}
	storeURL, err := need("LETTERBOX_STORE")
	if err != nil {
		return nil, err
	}
	routesRef, err := need("LETTERBOX_ROUTES")
	if err != nil {
		return nil, err
	}
	st, _, err := storeurl.Open(ctx, storeURL)
	if err != nil {
		return nil, err
	}
	loader, err := storeurl.RoutesLoader(ctx, routesRef)
	if err != nil {
		return nil, err
	}
	interval := 30 * time.Second
	if v := os.Getenv("LETTERBOX_ROUTES_INTERVAL"); v != "" {
		if interval, err = time.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("LETTERBOX_ROUTES_INTERVAL: %w", err)
		}
	}
	lim, err := Limits(os.Getenv)
	if err != nil {
		return nil, err
	}
	routes, err := lim.NewLive(ctx, loader, interval)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	q := &sqsqueue.Queue{API: sqs.NewFromConfig(cfg), URL: os.Getenv("LETTERBOX_DELIVERY_QUEUE_URL"), DeadLetterURL: os.Getenv("LETTERBOX_DEAD_LETTER_QUEUE_URL")}
	mode := os.Getenv("LETTERBOX_JOURNAL")
	switch mode {
	case "", delivery.JournalAll, delivery.JournalFailures:
	default:
		return nil, fmt.Errorf("LETTERBOX_JOURNAL=%q: want all or failures", mode)
	}
	links, _ := st.(store.Presigner)
	env := &Env{Store: st, Routes: routes, Queue: q, Journal: delivery.Journal{Store: st, Mode: mode}, Links: links, AWS: cfg, KeyPrefix: storeurl.Prefix(storeURL)}
	if dlq := os.Getenv("LETTERBOX_RAW_DEAD_LETTER_QUEUE_URL"); dlq != "" {
		env.RawDeadLetter = func(ctx context.Context, rec events.SQSMessage) error {
			_, err := q.API.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(rec.Body)})
			return err
		}
	}
	return env, nil
}

// Limits reads what the functions can honour, for the routes file:
// LETTERBOX_DELIVER_TIMEOUT (seconds) and whether forwarding is configured
// (LETTERBOX_SRS_DOMAIN).
func Limits(getenv func(string) string) (routing.Limits, error) {
	var lim routing.Limits
	if v := getenv("LETTERBOX_DELIVER_TIMEOUT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= int(routing.AttemptMargin/time.Second) {
			return lim, fmt.Errorf("LETTERBOX_DELIVER_TIMEOUT=%q: want the deliver function's timeout in seconds, more than %d", v, int(routing.AttemptMargin/time.Second))
		}
		lim.DeliverTimeout = time.Duration(n) * time.Second
	}
	if getenv("LETTERBOX_SRS_DOMAIN") == "" {
		lim.NoForward = "forwarding is not configured on this stack: deploy it with the ForwardSrsDomain parameter (see docs/forwarding.md)"
	}
	return lim, nil
}

// MustLoad is Load for a function's main: a configuration error ends the
// process with the error logged, so the deployment fails loudly.
func MustLoad(ctx context.Context, log *slog.Logger) *Env {
	env, err := Load(ctx)
	Check(log, err, "configuration")
	return env
}

// Check ends the process when err is not nil.
func Check(log *slog.Logger, err error, what string) {
	if err != nil {
		log.Error("cannot start: "+what, "err", err)
		os.Exit(1)
	}
}

// ForwardConfig reads the forward action's configuration from the
// environment alone, for `letterbox dev`: it is LoadForwardConfig without
// Secrets Manager, so LETTERBOX_SRS_SECRET_ARN is refused.
func ForwardConfig(getenv func(string) string) (*forward.Config, error) {
	return LoadForwardConfig(context.Background(), getenv, nil)
}

// Getenv is LoadSecrets for a function: the deliver function's variables,
// those of the secret LETTERBOX_SECRETS_ARN names (if any) added to the
// environment, read through a client built from the same AWS configuration
// as the other clients. Its result resolves secret_env and password_env and
// is what ForwardConfig reads.
func (e *Env) Getenv(ctx context.Context) (func(string) string, error) {
	return LoadSecrets(ctx, os.Getenv, secretsmanager.NewFromConfig(e.AWS))
}

// ForwardConfig is LoadForwardConfig for a function, reading getenv (see
// Getenv): the SRS secret may come from Secrets Manager, through a client
// built from the same AWS configuration as the other clients.
func (e *Env) ForwardConfig(ctx context.Context, getenv func(string) string) (*forward.Config, error) {
	return LoadForwardConfig(ctx, getenv, secretsmanager.NewFromConfig(e.AWS))
}

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
// same variables, through ForwardConfig:
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
