package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/letterboxmail/letterbox/internal/links"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storeurl"
)

// Attachment links (package links) are configured by two variables:
//
//	LETTERBOX_LINK_KEY_ARN   the Secrets Manager secret holding the link key
//	                         (both functions; the stack generates it)
//	LETTERBOX_LINK_BASE_URL  where the link function answers (deliver only)
//
// The secret is read once per cold start: AWSCURRENT signs, and links
// signed with AWSPREVIOUS are still accepted; a link signed with any older
// version is refused (403), which is how links are revoked.

// LoadLinkKeys reads the link keyring from the secret
// LETTERBOX_LINK_KEY_ARN names. The variable must be set.
func LoadLinkKeys(ctx context.Context, getenv func(string) string, secrets SecretsAPI) (*links.Keyring, error) {
	arn := getenv("LETTERBOX_LINK_KEY_ARN")
	if arn == "" {
		return nil, errors.New("environment variable LETTERBOX_LINK_KEY_ARN is not set")
	}
	current, previous, err := secretVersions(ctx, secrets, arn, "link key secret", "LETTERBOX_LINK_KEY_ARN")
	if err != nil {
		return nil, err
	}
	kr, err := links.NewKeyring([]byte(current), []byte(previous))
	if err != nil {
		return nil, fmt.Errorf("link key secret %s (LETTERBOX_LINK_KEY_ARN): %w", arn, err)
	}
	return kr, nil
}

// LoadLinkSigner returns the signer of the deliver function's attachment
// links, or nil when neither LETTERBOX_LINK_BASE_URL nor
// LETTERBOX_LINK_KEY_ARN is set. Setting one without the other is refused,
// and so is a base URL that is not an absolute http(s) URL.
func LoadLinkSigner(ctx context.Context, getenv func(string) string, secrets SecretsAPI) (*links.Signer, error) {
	base, arn := getenv("LETTERBOX_LINK_BASE_URL"), getenv("LETTERBOX_LINK_KEY_ARN")
	switch {
	case base == "" && arn == "":
		return nil, nil
	case base == "":
		return nil, errors.New("LETTERBOX_LINK_KEY_ARN is set but LETTERBOX_LINK_BASE_URL is not: set both, or neither")
	case arn == "":
		return nil, errors.New("LETTERBOX_LINK_BASE_URL is set but LETTERBOX_LINK_KEY_ARN is not: set both, or neither")
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("LETTERBOX_LINK_BASE_URL=%q: want an absolute http(s) URL", base)
	}
	kr, err := LoadLinkKeys(ctx, getenv, secrets)
	if err != nil {
		return nil, err
	}
	return &links.Signer{Base: base, Keys: kr}, nil
}

// LinkHandler builds the link function's handler from its environment
// (LETTERBOX_STORE, an s3:// URL, and LETTERBOX_LINK_KEY_ARN): it
// redirects to URLs the store presigns with the function's own current
// credentials. It reads neither the routes nor the queues.
func LinkHandler(ctx context.Context, getenv func(string) string, log *slog.Logger) (*links.Handler, error) {
	storeURL := getenv("LETTERBOX_STORE")
	if storeURL == "" {
		return nil, errors.New("environment variable LETTERBOX_STORE is not set")
	}
	st, _, err := storeurl.Open(ctx, storeURL)
	if err != nil {
		return nil, err
	}
	p, ok := st.(store.Presigner)
	if !ok {
		return nil, fmt.Errorf("LETTERBOX_STORE=%s: the link function needs an s3:// store", storeURL)
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	kr, err := LoadLinkKeys(ctx, getenv, secretsmanager.NewFromConfig(cfg))
	if err != nil {
		return nil, err
	}
	return &links.Handler{Keys: kr, Store: st, Redirect: p, Log: log}, nil
}
