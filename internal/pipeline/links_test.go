package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/letterboxmail/letterbox/internal/links"
	"github.com/letterboxmail/letterbox/internal/pipeline"
)

const (
	linkArn  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:LinkKeySecret-QwErTy"
	linkBase = "https://abcdefghij.lambda-url.eu-west-1.on.aws/"
	linkCur  = "linkcurrentlinkcurrentlinkcurrentlinkcurrentlinkcurrent000000001"
	linkPrev = "linkpreviouslinkpreviouslinkpreviouslinkpreviouslinkprevious0001"
	linkOld  = "linkolderlinkolderlinkolderlinkolderlinkolderlinkolderlinkolder01"
)

// The stack's wiring: the deliver function signs with AWSCURRENT of the
// secret LETTERBOX_LINK_KEY_ARN names, links under LETTERBOX_LINK_BASE_URL;
// the link function accepts AWSCURRENT and AWSPREVIOUS and nothing older.
func TestLinkSignerFromSecret(t *testing.T) {
	ctx := context.Background()
	before, _ := secretsServerFor(t, map[string]map[string]string{linkArn: {"AWSCURRENT": linkPrev, "AWSPREVIOUS": linkOld}}, nil)
	client, reqs := secretsServerFor(t, map[string]map[string]string{linkArn: {"AWSCURRENT": linkCur, "AWSPREVIOUS": linkPrev}}, nil)
	env := map[string]string{"LETTERBOX_LINK_BASE_URL": linkBase, "LETTERBOX_LINK_KEY_ARN": linkArn}
	getenv := func(k string) string { return env[k] }
	s, err := pipeline.LoadLinkSigner(ctx, getenv, client)
	if err != nil {
		t.Fatal(err)
	}
	if got := reqs(); len(got) != 2 || got[0] != (request{linkArn, "AWSCURRENT"}) || got[1] != (request{linkArn, "AWSPREVIOUS"}) {
		t.Errorf("GetSecretValue requests %+v, want AWSCURRENT then AWSPREVIOUS of %s", got, linkArn)
	}
	const key = "attachments/01JF8ZQ3V2M9N4X7C5B6A0D1EF/1/order.pdf"
	u, err := s.PresignGet(ctx, key, time.Hour)
	if err != nil || !strings.HasPrefix(u, linkBase+"v1.") {
		t.Fatalf("PresignGet = %q, %v; want a link under %s", u, err, linkBase)
	}
	// Made by the previous deployment (AWSCURRENT was then linkPrev), and
	// by the one before it (linkOld).
	olderSigner, err := pipeline.LoadLinkSigner(ctx, getenv, before)
	if err != nil {
		t.Fatal(err)
	}
	prev, _ := olderSigner.PresignGet(ctx, key, time.Hour)
	oldest := linkBase + mustKeyring(t, linkOld).Token(key, time.Now().Add(time.Hour))

	kr, err := pipeline.LoadLinkKeys(ctx, getenv, client)
	if err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]error{u: nil, prev: nil, oldest: links.ErrInvalid} {
		got, err := kr.Verify(strings.TrimPrefix(link, linkBase), time.Now())
		if !errors.Is(err, want) || (want == nil && got != key) {
			t.Errorf("Verify(%s…) = %q, %v; want %v", link[:len(linkBase)+12], got, err, want)
		}
	}
}

func mustKeyring(t *testing.T, secret string) *links.Keyring {
	t.Helper()
	kr, err := links.NewKeyring([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// A secret never rotated has no AWSPREVIOUS: fine. Every misconfiguration
// is refused at cold start, naming the variable, never the key.
func TestLinkSignerErrors(t *testing.T) {
	ctx := context.Background()
	neverRotated, _ := secretsServerFor(t, map[string]map[string]string{linkArn: {"AWSCURRENT": linkCur}}, nil)
	short, _ := secretsServerFor(t, map[string]map[string]string{linkArn: {"AWSCURRENT": "too-short"}}, nil)
	denied, _ := secretsServerFor(t, map[string]map[string]string{linkArn: {"AWSCURRENT": linkCur}}, map[string]string{linkArn: "AccessDeniedException"})
	binary, _ := secretsServerFor(t, map[string]map[string]string{linkArn: {"AWSCURRENT": ""}}, nil)
	both := map[string]string{"LETTERBOX_LINK_BASE_URL": linkBase, "LETTERBOX_LINK_KEY_ARN": linkArn}

	if s, err := pipeline.LoadLinkSigner(ctx, func(k string) string { return both[k] }, neverRotated); err != nil || s == nil {
		t.Errorf("never rotated: %v, %v", s, err)
	}
	if s, err := pipeline.LoadLinkSigner(ctx, func(string) string { return "" }, nil); err != nil || s != nil {
		t.Errorf("unconfigured: %v, %v; want nil, nil", s, err)
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		api  pipeline.SecretsAPI
		want string
	}{
		{"base URL only", map[string]string{"LETTERBOX_LINK_BASE_URL": linkBase}, neverRotated, "LETTERBOX_LINK_BASE_URL is set but LETTERBOX_LINK_KEY_ARN is not"},
		{"secret only", map[string]string{"LETTERBOX_LINK_KEY_ARN": linkArn}, neverRotated, "LETTERBOX_LINK_KEY_ARN is set but LETTERBOX_LINK_BASE_URL is not"},
		{"relative base URL", map[string]string{"LETTERBOX_LINK_BASE_URL": "links/", "LETTERBOX_LINK_KEY_ARN": linkArn}, neverRotated, `LETTERBOX_LINK_BASE_URL="links/": want an absolute http(s) URL`},
		{"short key", both, short, "link key secret " + linkArn + " (LETTERBOX_LINK_KEY_ARN): links: a signing key of 9 bytes; want at least 32"},
		{"access denied", both, denied, "link key secret " + linkArn + " (LETTERBOX_LINK_KEY_ARN), version AWSCURRENT: "},
		{"binary secret", both, binary, "link key secret " + linkArn + " (LETTERBOX_LINK_KEY_ARN), version AWSCURRENT: the version has no SecretString"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := pipeline.LoadLinkSigner(ctx, func(k string) string { return c.env[k] }, c.api)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v; want it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), linkCur) || strings.Contains(err.Error(), "too-short") {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
	if _, err := pipeline.LoadLinkKeys(ctx, func(string) string { return "" }, neverRotated); err == nil || err.Error() != "environment variable LETTERBOX_LINK_KEY_ARN is not set" {
		t.Errorf("LoadLinkKeys without the variable: %v", err)
	}
}
