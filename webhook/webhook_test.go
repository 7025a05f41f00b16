package webhook_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/webhook"
)

// The Standard Webhooks reference vector (shared by its reference libraries).
const (
	vecSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID      = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecTS      = 1614265330
	vecBody    = `{"test": 2432232314}`
	vecSigWant = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignMatchesReferenceVector(t *testing.T) {
	k, err := webhook.ParseSecret(vecSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Sign(vecID, time.Unix(vecTS, 0), []byte(vecBody)); got != vecSigWant {
		t.Fatalf("Sign = %s, want %s", got, vecSigWant)
	}
	if k.String() != vecSecret {
		t.Fatalf("String = %s", k.String())
	}
}

func headers(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set(webhook.HeaderID, id)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(webhook.HeaderSignature, sig)
	return h
}

func TestVerify(t *testing.T) {
	now := func() time.Time { return time.Unix(vecTS, 0).Add(time.Minute) }
	old, _ := webhook.ParseSecret("whsec_" + "c2VjcmV0LW9sZA==")
	cur, _ := webhook.ParseSecret(vecSecret)
	rotated := webhook.SignatureHeader([]webhook.Secret{old, cur}, vecID, time.Unix(vecTS, 0), []byte(vecBody))

	tests := []struct {
		name    string
		secrets []string
		h       http.Header
		body    string
		want    error
	}{
		{"valid", []string{vecSecret}, headers(vecID, vecTS, vecSigWant), vecBody, nil},
		{"one of several signatures", []string{vecSecret}, headers(vecID, vecTS, "v1,bm9wZQ== "+vecSigWant), vecBody, nil},
		{"rotation: receiver knows only the old secret", []string{old.String()}, headers(vecID, vecTS, rotated), vecBody, nil},
		{"tampered body", []string{vecSecret}, headers(vecID, vecTS, vecSigWant), `{"test": 1}`, webhook.ErrNoMatch},
		{"wrong id", []string{vecSecret}, headers("msg_other", vecTS, vecSigWant), vecBody, webhook.ErrNoMatch},
		{"stale timestamp", []string{vecSecret}, headers(vecID, vecTS-3600, vecSigWant), vecBody, webhook.ErrInvalidTimestamp},
		{"future timestamp", []string{vecSecret}, headers(vecID, vecTS+3600, vecSigWant), vecBody, webhook.ErrInvalidTimestamp},
		{"malformed timestamp", []string{vecSecret}, func() http.Header {
			h := headers(vecID, vecTS, vecSigWant)
			h.Set(webhook.HeaderTimestamp, "soon")
			return h
		}(), vecBody, webhook.ErrInvalidTimestamp},
		{"missing signature", []string{vecSecret}, headers(vecID, vecTS, ""), vecBody, webhook.ErrMissingHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := webhook.NewVerifier(tt.secrets...)
			if err != nil {
				t.Fatal(err)
			}
			v.Now = now
			if got := v.Verify(tt.h, []byte(tt.body)); got != tt.want {
				t.Fatalf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseSecretRejectsGarbage(t *testing.T) {
	for _, s := range []string{"", "whsec_", "whsec_!!!not base64"} {
		if _, err := webhook.ParseSecret(s); err != webhook.ErrInvalidSecret {
			t.Errorf("ParseSecret(%q) = %v, want ErrInvalidSecret", s, err)
		}
	}
}

func TestSignerMatchesSign(t *testing.T) {
	a, _ := webhook.ParseSecret(vecSecret)
	b, _ := webhook.ParseSecret("whsec_c2Vjb25k")
	s := webhook.NewSigner([]webhook.Secret{a, b}, vecID, time.Unix(vecTS, 0))
	s.Write([]byte(vecBody[:5]))
	s.Write([]byte(vecBody[5:]))
	want := webhook.SignatureHeader([]webhook.Secret{a, b}, vecID, time.Unix(vecTS, 0), []byte(vecBody))
	if got := s.Header(); got != want || !strings.HasPrefix(got, vecSigWant+" ") || s.Len() != int64(len(vecBody)) {
		t.Fatalf("Signer.Header = %s, want %s", got, want)
	}
}
