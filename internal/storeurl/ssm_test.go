package storeurl_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/internal/storeurl"
)

// ssmServer answers GetParameter in SSM's JSON protocol: SSM cannot run
// here, so this checks what the real SDK sends and decodes.
func ssmServer(t *testing.T) (*ssm.Client, func(value string)) {
	var mu sync.Mutex
	value, version := "", int64(0)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name           string
			WithDecryption bool
		}
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &in)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if r.Header.Get("X-Amz-Target") != "AmazonSSM.GetParameter" || in.Name != "/letterbox/routes" || !in.WithDecryption {
			w.WriteHeader(400)
			io.WriteString(w, `{"__type":"ParameterNotFound","message":"no such parameter"}`)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"Parameter": map[string]any{"Name": in.Name, "Type": "String", "Value": value, "Version": version}})
	}))
	t.Cleanup(srv.Close)
	c := ssm.New(ssm.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL), Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RetryMaxAttempts: 1})
	return c, func(v string) { mu.Lock(); value, version = v, version+1; mu.Unlock() }
}

func TestRoutesFromSSMReload(t *testing.T) {
	client, set := ssmServer(t)
	set("domains: [a.test]\nroutes: []\n")
	ctx := context.Background()
	live, err := routing.NewLive(ctx, storeurl.SSMLoader{API: client, Parameter: "/letterbox/routes"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !live.Get(ctx).HasDomain("x@a.test") {
		t.Fatal("first load")
	}
	set("domains: [b.test]\nroutes: []\n")
	if cfg := live.Get(ctx); !cfg.HasDomain("x@b.test") || cfg.File != "ssm:///letterbox/routes" {
		t.Fatalf("not reloaded: %v from %s", cfg.Domains, cfg.File)
	}
	_, _, _, err = storeurl.SSMLoader{API: client, Parameter: "/missing"}.Load(ctx, "")
	if err == nil || !fault.IsTemporary(err) {
		t.Fatalf("missing parameter: %v", err)
	}
}
