package pipeline_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/letterboxmail/letterbox/internal/pipeline"
)

const (
	arn      = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ForwardSrsSecret-AbCdEf"
	current  = "currentcurrentcurrentcurrent0001"
	previous = "previouspreviouspreviousprevious"
	envOld   = "envoldenvoldenvoldenvold"
)

// request is one GetSecretValue call as the real SDK serialised it.
type request struct{ SecretID, VersionStage string }

// secretsServer answers Secrets Manager JSON-protocol GetSecretValue
// requests for the secret arn from versions (stage → value; "" stands for a
// binary secret) or, for a stage in fail, with that error type: the thin
// fake that stands in for Secrets Manager, which cannot run here. The
// client is the real SDK client, so the requests and the error decoding
// (ResourceNotFoundException) are the SDK's own.
func secretsServer(t *testing.T, versions, fail map[string]string) (*secretsmanager.Client, func() []request) {
	t.Helper()
	return secretsServerFor(t, map[string]map[string]string{arn: versions}, fail)
}

// secretsServerFor is secretsServer for several secrets (ARN → stage →
// value). A request without a stage asks for AWSCURRENT, as in Secrets
// Manager; fail is looked up by ARN, then by stage.
func secretsServerFor(t *testing.T, secrets map[string]map[string]string, fail map[string]string) (*secretsmanager.Client, func() []request) {
	t.Helper()
	var mu sync.Mutex
	var reqs []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var in struct{ SecretId, VersionStage string }
		json.Unmarshal(b, &in)
		mu.Lock()
		reqs = append(reqs, request{in.SecretId, in.VersionStage})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if target := r.Header.Get("X-Amz-Target"); target != "secretsmanager.GetSecretValue" {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"__type": "InvalidRequestException", "message": "unexpected " + target})
			return
		}
		typ, ok := fail[in.SecretId]
		if !ok {
			typ, ok = fail[in.VersionStage]
		}
		if ok {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": "refused by the test"})
			return
		}
		stage := in.VersionStage
		if stage == "" {
			stage = "AWSCURRENT"
		}
		v, ok := secrets[in.SecretId][stage]
		if !ok {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"__type": "ResourceNotFoundException", "message": "Secrets Manager can't find the specified secret value for staging label: " + stage})
			return
		}
		out := map[string]any{"ARN": in.SecretId, "Name": "test-secret", "VersionId": "v-" + stage, "VersionStages": []string{stage}}
		if v != "" {
			out["SecretString"] = v
		} else {
			out["SecretBinary"] = "AAEC"
		}
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)
	client := secretsmanager.New(secretsmanager.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	}, func(o *secretsmanager.Options) { o.RetryMaxAttempts = 1 })
	return client, func() []request { mu.Lock(); defer mu.Unlock(); return slices.Clone(reqs) }
}

func TestLoadForwardConfig(t *testing.T) {
	both := map[string]string{"AWSCURRENT": current, "AWSPREVIOUS": previous}
	cases := []struct {
		name       string
		env        map[string]string
		versions   map[string]string // nil: no Secrets Manager client (letterbox dev)
		fail       map[string]string
		off        bool // forwarding off: a nil config
		wantSecret string
		wantOld    []string
		wantErr    string   // substring; "" means no error
		wantReqs   []string // the version stages asked for, in order
	}{
		{name: "off without a domain", env: map[string]string{}, versions: both, off: true},
		{name: "env secret, no Secrets Manager", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET": current, "LETTERBOX_SRS_OLD_SECRETS": " " + envOld + " ,"},
			versions: both, wantSecret: current, wantOld: []string{envOld}},
		{name: "current only", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET_ARN": arn},
			versions: map[string]string{"AWSCURRENT": current}, wantSecret: current, wantReqs: []string{"AWSCURRENT", "AWSPREVIOUS"}},
		{name: "current and previous", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET_ARN": arn},
			versions: both, wantSecret: current, wantOld: []string{previous}, wantReqs: []string{"AWSCURRENT", "AWSPREVIOUS"}},
		{name: "previous, then the old secrets from the environment", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET_ARN": arn, "LETTERBOX_SRS_OLD_SECRETS": envOld},
			versions: both, wantSecret: current, wantOld: []string{previous, envOld}, wantReqs: []string{"AWSCURRENT", "AWSPREVIOUS"}},
		{name: "previous equal to current is not repeated", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET_ARN": arn},
			versions: map[string]string{"AWSCURRENT": current, "AWSPREVIOUS": current}, wantSecret: current, wantReqs: []string{"AWSCURRENT", "AWSPREVIOUS"}},
		{name: "fetch error on the current version", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET_ARN": arn},
			versions: both, fail: map[string]string{"AWSCURRENT": "AccessDeniedException"},
			wantErr: "SRS secret " + arn + " (LETTERBOX_SRS_SECRET_ARN), version AWSCURRENT: ", wantReqs: []string{"AWSCURRENT"}},
		{name: "missing secret", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET_ARN": arn},
			versions: map[string]string{}, wantErr: "version AWSCURRENT: ", wantReqs: []string{"AWSCURRENT"}},
		{name: "fetch error on the previous version", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET_ARN": arn},
			versions: both, fail: map[string]string{"AWSPREVIOUS": "InternalServiceError"},
			wantErr: "SRS secret " + arn + " (LETTERBOX_SRS_SECRET_ARN), version AWSPREVIOUS: ", wantReqs: []string{"AWSCURRENT", "AWSPREVIOUS"}},
		{name: "binary secret", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET_ARN": arn},
			versions: map[string]string{"AWSCURRENT": ""}, wantErr: "version AWSCURRENT: the version has no SecretString", wantReqs: []string{"AWSCURRENT"}},
		{name: "both secret and ARN are refused", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET": current, "LETTERBOX_SRS_SECRET_ARN": arn},
			versions: both, wantErr: "both LETTERBOX_SRS_SECRET and LETTERBOX_SRS_SECRET_ARN are set"},
		{name: "ARN without a domain is refused", env: map[string]string{"LETTERBOX_SRS_SECRET_ARN": arn},
			versions: both, wantErr: "LETTERBOX_SRS_SECRET_ARN is set but LETTERBOX_SRS_DOMAIN is not"},
		{name: "ARN without AWS (letterbox dev) is refused", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET_ARN": arn},
			wantErr: "LETTERBOX_SRS_SECRET_ARN is read only by the functions on AWS"},
		{name: "bad timeout", env: map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET": current, "LETTERBOX_FORWARD_TIMEOUT": "soon"},
			wantErr: "LETTERBOX_FORWARD_TIMEOUT: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			getenv := func(k string) string { return c.env[k] }
			var api pipeline.SecretsAPI
			reqs := func() []request { return nil }
			if c.versions != nil {
				client, r := secretsServer(t, c.versions, c.fail)
				api, reqs = client, r
			}
			cfg, err := pipeline.LoadForwardConfig(context.Background(), getenv, api)
			var stages []string
			for _, r := range reqs() {
				if r.SecretID != arn {
					t.Errorf("GetSecretValue SecretId %q, want %q", r.SecretID, arn)
				}
				stages = append(stages, r.VersionStage)
			}
			if !slices.Equal(stages, c.wantReqs) {
				t.Errorf("GetSecretValue for stages %v, want %v", stages, c.wantReqs)
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				for _, v := range []string{current, previous, envOld} {
					if strings.Contains(err.Error(), v) {
						t.Errorf("the error shows a secret value: %v", err)
					}
				}
				if cfg != nil {
					t.Errorf("config %+v with an error", cfg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.off {
				if cfg != nil {
					t.Fatalf("config %+v, want nil (forwarding off)", cfg)
				}
				return
			}
			if cfg == nil {
				t.Fatal("nil config, want forwarding on")
			}
			if cfg.SRSDomain != "fwd.example.net" {
				t.Errorf("SRSDomain %q", cfg.SRSDomain)
			}
			if cfg.SRSSecret != c.wantSecret {
				t.Errorf("SRSSecret is not the expected one (len %d, want len %d)", len(cfg.SRSSecret), len(c.wantSecret))
			}
			if !slices.Equal(cfg.SRSOldSecrets, c.wantOld) {
				t.Errorf("SRSOldSecrets: %d values, want %d, or not in order (previous version first)", len(cfg.SRSOldSecrets), len(c.wantOld))
			}
		})
	}
}

// LoadForwardConfig without Secrets Manager, as `letterbox dev` calls
// it, needs no AWS.
func TestForwardConfigFromEnvironmentOnly(t *testing.T) {
	env := map[string]string{"LETTERBOX_SRS_DOMAIN": "fwd.example.net", "LETTERBOX_SRS_SECRET": current, "LETTERBOX_FORWARD_HELO": "mx.example.net", "LETTERBOX_FORWARD_TIMEOUT": "90s"}
	cfg, err := pipeline.LoadForwardConfig(context.Background(), func(k string) string { return env[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SRSSecret != current || cfg.HELO != "mx.example.net" || cfg.Timeout.String() != "1m30s" || cfg.SRSOldSecrets != nil {
		t.Errorf("config: secret ok %v, HELO %q, timeout %v, %d old secrets", cfg.SRSSecret == current, cfg.HELO, cfg.Timeout, len(cfg.SRSOldSecrets))
	}
	env["LETTERBOX_SRS_SECRET"], env["LETTERBOX_SRS_SECRET_ARN"] = "", arn
	if _, err := pipeline.LoadForwardConfig(context.Background(), func(k string) string { return env[k] }, nil); err == nil || !strings.Contains(err.Error(), "set LETTERBOX_SRS_SECRET instead") {
		t.Errorf("err = %v, want LETTERBOX_SRS_SECRET_ARN refused without AWS", err)
	}
}

// The functions check the routes file against the deliver function's
// timeout and refuse forward actions where forwarding is not configured
// (issue 12 items 3 and 8).
func TestLimits(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	lim, err := pipeline.Limits(env(map[string]string{"LETTERBOX_DELIVER_TIMEOUT": "300", "LETTERBOX_SRS_DOMAIN": "fwd.example.test"}))
	if err != nil || lim.DeliverTimeout != 300*time.Second || lim.NoForward != "" {
		t.Fatalf("Limits = %+v, %v", lim, err)
	}
	lim, err = pipeline.Limits(env(nil))
	if err != nil || lim.DeliverTimeout != 0 || !strings.Contains(lim.NoForward, "ForwardSrsDomain") {
		t.Fatalf("Limits without variables = %+v, %v", lim, err)
	}
	routes := "domains: [a.test]\nroutes:\n  - name: r\n    catch_all: true\n    actions:\n      - forward: {to: [a@b.test]}\n"
	if _, err := lim.Parse("s3://bucket/routes.yaml", []byte(routes)); err == nil || !strings.Contains(err.Error(),
		"s3://bucket/routes.yaml:6: routes[0].actions[0].forward: forwarding is not configured on this stack: deploy it with the ForwardSrsDomain parameter") {
		t.Fatalf("forward action without forwarding: %v", err)
	}
	for _, bad := range []string{"2m", "15", "-1"} {
		if _, err := pipeline.Limits(env(map[string]string{"LETTERBOX_DELIVER_TIMEOUT": bad})); err == nil ||
			!strings.Contains(err.Error(), `LETTERBOX_DELIVER_TIMEOUT="`+bad+`": want the deliver function's timeout in seconds, more than 15`) {
			t.Errorf("LETTERBOX_DELIVER_TIMEOUT=%s: %v", bad, err)
		}
	}
}
