package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/ingest"
	"github.com/letterboxmail/letterbox/internal/mailauth"
	"github.com/letterboxmail/letterbox/internal/parser"
	"github.com/letterboxmail/letterbox/internal/store"
	"github.com/letterboxmail/letterbox/internal/storeurl"
	"github.com/letterboxmail/letterbox/message"
)

func init() {
	commands["parse"] = command{
		summary: "print the parsed JSON of a raw message (parse [--client-ip IP --mail-from ADDR --helo NAME] [--resolver ADDR] [--no-auth] [--max-body-bytes N] FILE|-)",
		run: func(ctx context.Context, args []string) error {
			return runParse(ctx, args, os.Stdin, os.Stdout)
		},
	}
}

const parseUsage = "usage: letterbox parse [--client-ip IP --mail-from ADDR --helo NAME] [--rcpt ADDR,...] [--resolver HOST:PORT] [--no-auth] [--max-body-bytes N] FILE|-\n       letterbox parse --store URL [--no-auth] [--max-body-bytes N] ID"

// runParse parses one raw message and prints its JSON, indented. Without
// envelope flags SPF is none and DMARC relies on DKIM alone.
func runParse(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("parse", flag.ContinueOnError)
	clientIP := fs.String("client-ip", "", "the SMTP client's `IP` address, for SPF")
	mailFrom := fs.String("mail-from", "", "the envelope sender (MAIL FROM) `address`")
	helo := fs.String("helo", "", "the client's HELO/EHLO `name`")
	rcpt := fs.String("rcpt", "", "envelope recipients, comma-separated `addresses`")
	resolver := fs.String("resolver", envOr("LETTERBOX_RESOLVER", ""), "DNS server `host:port` for SPF, DKIM, DMARC and ARC (env LETTERBOX_RESOLVER; default: the system's)")
	timeout := fs.Duration("dns-timeout", mailauth.DefaultTimeout, "timeout of each DNS query")
	noAuth := fs.Bool("no-auth", false, "skip SPF, DKIM, DMARC and ARC checks")
	id := fs.String("id", "", "message `id` to report (default: the file name without .eml)")
	storeURL := fs.String("store", "", "read message `ID` and its envelope from this store (file://DIR or s3://BUCKET/PREFIX) instead of a file")
	maxBody := maxBodyFlag(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return &exitError{2, err}
	}
	maxBodyBytes, err := maxBody()
	if err != nil {
		return &exitError{2, err}
	}
	if len(pos) != 1 {
		return &exitError{2, errors.New(parseUsage)}
	}
	opts := parser.Options{ID: *id, MaxBodyBytes: maxBodyBytes}
	var in io.Reader = stdin
	var verdicts *store.Verdicts
	if *storeURL != "" {
		st, closer, err := storeurl.Open(ctx, *storeURL)
		if err != nil {
			return err
		}
		defer closer.Close()
		key := pos[0]
		if _, ok := store.IDFromRawKey(key); !ok {
			key = store.RawKey(pos[0])
		}
		rc, obj, err := st.Get(ctx, key)
		if err != nil {
			return err
		}
		defer rc.Close()
		if opts.Envelope, err = store.Envelope(ctx, st, obj); err != nil {
			return err
		}
		if verdicts, err = store.ReadVerdicts(ctx, st, obj); err != nil {
			return err
		}
		in = rc
		opts.ID, _ = store.IDFromRawKey(key)
		opts.RawKey = key
		// The same keys as the pipeline's, without writing them again.
		opts.Store = readOnly{st}
	} else if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
		if opts.ID == "" {
			opts.ID = strings.TrimSuffix(filepath.Base(pos[0]), ".eml")
		}
		// A file from a file store keeps its key: .../raw/<id>.eml.
		if filepath.Base(filepath.Dir(pos[0])) == "raw" {
			opts.RawKey = store.RawKey(strings.TrimSuffix(filepath.Base(pos[0]), ".eml"))
		}
	}
	if opts.Envelope == nil && (*clientIP != "" || *mailFrom != "" || *helo != "" || *rcpt != "") {
		opts.Envelope = &message.Envelope{
			ClientIP: *clientIP, MailFrom: *mailFrom, HELO: *helo,
			RcptTo: splitList(*rcpt), ReceivedAt: time.Now().UTC(),
		}
	}
	if !*noAuth {
		c, err := mailauth.New(mailauth.Config{Resolver: *resolver, Timeout: *timeout})
		if err != nil {
			return &exitError{2, err}
		}
		opts.Auth = c
	}
	m, err := parser.Parse(ctx, in, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	// The same spam and virus as ingest gives: the gateway's verdicts, or
	// SES's.
	ingest.ApplyVerdicts(m, verdicts)
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(m)
}

// maxBodyFlag registers --max-body-bytes (env LETTERBOX_MAX_BODY_BYTES) and
// returns a function that validates it after parsing.
func maxBodyFlag(fs *flag.FlagSet) func() (int, error) {
	env := os.Getenv("LETTERBOX_MAX_BODY_BYTES")
	v := fs.String("max-body-bytes", env, "text and HTML parts larger than this many `bytes` are stored like attachments and cut in the JSON (env LETTERBOX_MAX_BODY_BYTES; default 1048576)")
	return func() (int, error) {
		n, err := parser.ParseMaxBodyBytes(*v)
		if err == nil {
			return n, nil
		}
		name := "LETTERBOX_MAX_BODY_BYTES"
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "max-body-bytes" {
				name = "--max-body-bytes"
			}
		})
		return 0, fmt.Errorf("%s: %w", name, err)
	}
}

// readOnly is a store whose writes are dropped: `parse --store` names
// attachments with the pipeline's keys without writing them a second time.
type readOnly struct{ store.Store }

func (r readOnly) Put(ctx context.Context, key string, body io.Reader, meta map[string]string) (store.Object, error) {
	n, err := io.Copy(io.Discard, body)
	return store.Object{Key: key, Size: n, Meta: meta}, err
}
