package pipeline_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/egress"
	"github.com/letterboxmail/letterbox/internal/pipeline"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/webhook"
)

const (
	varsArn     = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:letterbox/deliver-XyZ123"
	hookSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	relayPass   = "relay-password-do-not-log"
	hiddenValue = "nested-value-do-not-log"
)

// arcPEM returns a new Ed25519 private key as PKCS #8 PEM text.
func arcPEM(t *testing.T) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// secretJSON encodes the variables as the operator's secret would hold them.
func secretJSON(t *testing.T, vars map[string]string) string {
	t.Helper()
	b, err := json.Marshal(vars)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The operator's secret (LETTERBOX_SECRETS_ARN) is read once with the real
// SDK client, and its variables reach what resolves them: a webhook's
// secret_env (delivery.Webhooks), a forward's password_env (forward.Config's
// Getenv) and LETTERBOX_ARC_KEY (LoadForwardConfig), while the other
// variables still come from the environment. The SRS key comes from its own
// secret, as the stack sets it up.
func TestLoadSecretsResolves(t *testing.T) {
	key := arcPEM(t)
	client, reqs := secretsServerFor(t, map[string]map[string]string{
		varsArn: {"AWSCURRENT": secretJSON(t, map[string]string{"ACME_WEBHOOK_SECRET": hookSecret, "RELAY_PASSWORD": relayPass, "LETTERBOX_ARC_KEY": key,
			"LETTERBOX_ARC_SELECTOR": "arc2026", "LETTERBOX_ARC_DOMAIN": "fwd.example.net", "EMPTY_IN_ENV": "from-secret"})},
		arn: {"AWSCURRENT": current},
	}, nil)
	env := map[string]string{"LETTERBOX_SECRETS_ARN": varsArn, "LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET_ARN": arn,
		"EMPTY_IN_ENV": "", "ONLY_IN_ENV": "from-env"}
	getenv, err := pipeline.LoadSecrets(context.Background(), func(k string) string { return env[k] }, client)
	if err != nil {
		t.Fatal(err)
	}
	if got := reqs(); len(got) != 1 || got[0] != (request{varsArn, ""}) {
		t.Errorf("GetSecretValue requests %+v, want one for %s, AWSCURRENT (no stage)", got, varsArn)
	}
	for k, want := range map[string]string{"ONLY_IN_ENV": "from-env", "EMPTY_IN_ENV": "from-secret", "LETTERBOX_SRS_DOMAIN": "fwd.example.net", "UNSET": ""} {
		if got := getenv(k); got != want {
			t.Errorf("getenv(%s) = %q, want %q", k, got, want)
		}
	}

	// secret_env, as the deliver function resolves it.
	hooks := delivery.NewWebhooks(egress.Policy{}, getenv)
	got, err := hooks.Secrets(&routing.WebhookAction{SecretEnv: "ACME_WEBHOOK_SECRET"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := webhook.ParseSecret(hookSecret)
	if len(got) != 1 || !bytes.Equal(got[0], want) {
		t.Errorf("secret_env ACME_WEBHOOK_SECRET resolved to %d secrets, not the one in the secret", len(got))
	}
	if _, err := hooks.Secrets(&routing.WebhookAction{SecretEnv: "MISSING_SECRET"}); err == nil || !strings.Contains(err.Error(), "environment variable MISSING_SECRET is empty") {
		t.Errorf("secret_env of a variable in neither place: err = %v", err)
	}

	// password_env and the ARC key, through the forward configuration.
	cfg, err := pipeline.LoadForwardConfig(context.Background(), getenv, client)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Getenv("RELAY_PASSWORD") != relayPass {
		t.Error("forward.Config.Getenv does not resolve password_env RELAY_PASSWORD from the secret")
	}
	if cfg.SRSSecret != current {
		t.Error("the SRS key is not the one from LETTERBOX_SRS_SECRET_ARN")
	}
	if cfg.ARC == nil || cfg.ARC.Selector != "arc2026" || cfg.ARC.Domain != "fwd.example.net" {
		t.Fatalf("ARC key %+v, want the secret's with selector arc2026 at fwd.example.net", cfg.ARC)
	}
	if _, ok := cfg.ARC.Signer.(ed25519.PrivateKey); !ok {
		t.Errorf("ARC signer %T, want the secret's Ed25519 key", cfg.ARC.Signer)
	}
}

func TestLoadSecretsErrors(t *testing.T) {
	values := []string{hookSecret, relayPass, hiddenValue, "whsec_"}
	cases := []struct {
		name    string
		env     map[string]string
		secret  *string           // the secret's SecretString; nil: no client (letterbox dev)
		fail    map[string]string // as in secretsServerFor
		wantErr string            // substring; "" means no error
	}{
		{name: "unset: no request, the environment", env: map[string]string{"A": "1"}, secret: ptr(`{"A": "2"}`)},
		{name: "empty object", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`{}`)},
		{name: "malformed JSON", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn},
			secret:  ptr(`{"ACME_WEBHOOK_SECRET": "` + hookSecret + `", "RELAY_PASSWORD": ` + relayPass + `}`),
			wantErr: "secret " + varsArn + " (LETTERBOX_SECRETS_ARN): not valid JSON (syntax error at byte "},
		{name: "a string, not an object", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`"` + hookSecret + `"`),
			wantErr: "(LETTERBOX_SECRETS_ARN): not a JSON object; want a JSON object of strings"},
		{name: "an array, not an object", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`["` + hookSecret + `"]`),
			wantErr: "not a JSON object; want"},
		{name: "null, not an object", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`null`),
			wantErr: "not a JSON object (null)"},
		{name: "a plain string secret, such as the SRS key", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(relayPass),
			wantErr: "not valid JSON (syntax error at byte 1)"},
		{name: "number value", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`{"ACME_WEBHOOK_SECRET": "` + hookSecret + `", "SMTP_PORT": 587}`),
			wantErr: "(LETTERBOX_SECRETS_ARN): the value of SMTP_PORT is a number; want a string"},
		{name: "object value", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`{"RELAY": {"password": "` + hiddenValue + `"}}`),
			wantErr: "the value of RELAY is an object; want a string"},
		{name: "array value", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`{"HOOK_SECRETS": ["` + hookSecret + `"]}`),
			wantErr: "the value of HOOK_SECRETS is an array; want a string"},
		{name: "boolean value", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`{"ON": true}`),
			wantErr: "the value of ON is a boolean; want a string"},
		{name: "null value", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`{"RELAY_PASSWORD": null}`),
			wantErr: "the value of RELAY_PASSWORD is null; want a string"},
		{name: "empty key", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`{"": "` + hiddenValue + `"}`),
			wantErr: "an empty key"},
		{name: "binary secret", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(""),
			wantErr: "(LETTERBOX_SECRETS_ARN): no SecretString"},
		{name: "fetch error", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn}, secret: ptr(`{"RELAY_PASSWORD": "` + relayPass + `"}`),
			fail: map[string]string{varsArn: "AccessDeniedException"}, wantErr: "secret " + varsArn + " (LETTERBOX_SECRETS_ARN): "},
		{name: "missing secret", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn + "-gone"}, secret: ptr(`{}`),
			wantErr: "ResourceNotFoundException"},
		// Precedence: a name has one place. A variable the environment
		// sets is refused in the secret, even with the same value.
		{name: "key also in the environment", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn, "RELAY_PASSWORD": relayPass},
			secret:  ptr(`{"ACME_WEBHOOK_SECRET": "` + hookSecret + `", "RELAY_PASSWORD": "` + relayPass + `"}`),
			wantErr: "(LETTERBOX_SECRETS_ARN): RELAY_PASSWORD is also set in the function's environment: set it in one place"},
		{name: "the stack's own variable in the secret", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn, "LETTERBOX_SRS_SECRET_ARN": arn},
			secret:  ptr(`{"LETTERBOX_SRS_SECRET_ARN": "` + arn + `"}`),
			wantErr: "LETTERBOX_SRS_SECRET_ARN is also set in the function's environment"},
		{name: "without AWS (letterbox dev)", env: map[string]string{"LETTERBOX_SECRETS_ARN": varsArn},
			wantErr: "LETTERBOX_SECRETS_ARN is read only by the functions on AWS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			environ := func(k string) string { return c.env[k] }
			var api pipeline.SecretsAPI
			reqs := func() []request { return nil }
			if c.secret != nil {
				api, reqs = secretsServerFor(t, map[string]map[string]string{varsArn: {"AWSCURRENT": *c.secret}}, c.fail)
			}
			getenv, err := pipeline.LoadSecrets(context.Background(), environ, api)
			if n := len(reqs()); c.env["LETTERBOX_SECRETS_ARN"] == "" && n != 0 || c.env["LETTERBOX_SECRETS_ARN"] != "" && c.secret != nil && n != 1 {
				t.Errorf("%d GetSecretValue requests", n)
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				for _, v := range values {
					if strings.Contains(err.Error(), v) {
						t.Errorf("the error shows a secret value: %v", err)
					}
				}
				if getenv != nil {
					t.Error("a getenv with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.env {
				if getenv(k) != v {
					t.Errorf("getenv(%s) is not the environment's value", k)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }

// LETTERBOX_ARC_KEY holds the PEM text itself, as an alternative to
// LETTERBOX_ARC_KEY_FILE; never both.
func TestARCKeyText(t *testing.T) {
	key := arcPEM(t)
	file := filepath.Join(t.TempDir(), "arc.pem")
	if err := os.WriteFile(file, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET": current,
		"LETTERBOX_ARC_SELECTOR": "arc", "LETTERBOX_ARC_DOMAIN": "fwd.example.net."}
	cases := []struct {
		name    string
		env     map[string]string
		wantARC bool
		wantErr string
	}{
		{name: "none: no sealing", env: map[string]string{}},
		{name: "text", env: map[string]string{"LETTERBOX_ARC_KEY": key}, wantARC: true},
		{name: "file", env: map[string]string{"LETTERBOX_ARC_KEY_FILE": file}, wantARC: true},
		{name: "both", env: map[string]string{"LETTERBOX_ARC_KEY": key, "LETTERBOX_ARC_KEY_FILE": file},
			wantErr: "both LETTERBOX_ARC_KEY and LETTERBOX_ARC_KEY_FILE are set"},
		{name: "text that is not PEM", env: map[string]string{"LETTERBOX_ARC_KEY": relayPass},
			wantErr: "ARC key (LETTERBOX_ARC_KEY): arc key: no PEM block"},
		{name: "text without a selector", env: map[string]string{"LETTERBOX_ARC_KEY": key, "LETTERBOX_ARC_SELECTOR": ""},
			wantErr: "ARC key (LETTERBOX_ARC_KEY): arc key: selector and domain are required"},
		{name: "missing file", env: map[string]string{"LETTERBOX_ARC_KEY_FILE": file + ".gone"},
			wantErr: "ARC key (LETTERBOX_ARC_KEY_FILE): "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{}
			for _, m := range []map[string]string{base, c.env} {
				for k, v := range m {
					env[k] = v
				}
			}
			cfg, err := pipeline.LoadForwardConfig(context.Background(), func(k string) string { return env[k] }, nil)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				if slices.ContainsFunc([]string{key, relayPass, "PRIVATE KEY"}, func(v string) bool { return strings.Contains(err.Error(), v) }) {
					t.Errorf("the error shows the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg.ARC != nil) != c.wantARC {
				t.Fatalf("ARC key %v, want one: %v", cfg.ARC, c.wantARC)
			}
			if c.wantARC && (cfg.ARC.Selector != "arc" || cfg.ARC.Domain != "fwd.example.net") {
				t.Errorf("ARC key at %s._domainkey.%s, want arc._domainkey.fwd.example.net", cfg.ARC.Selector, cfg.ARC.Domain)
			}
		})
	}
}
