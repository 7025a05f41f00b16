package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"
)

func init() {
	commands["send"] = command{summary: "send a test message over SMTP", run: runSend}
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func runSend(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	addr := fs.String("smtp", envOr("LETTERBOX_SMTP_ADDR", "127.0.0.1:2525"), "SMTP server `host:port`")
	from := fs.String("from", "sender@letterbox.invalid", "sender `address` (MAIL FROM and From:)")
	var to, attach, headers listFlag
	fs.Var(&to, "to", "recipient `address` (repeatable)")
	subject := fs.String("subject", "Test message from letterbox", "subject")
	text := fs.String("text", "Hello from letterbox send.\n", "plain-text body")
	html := fs.String("html", "", "HTML body, sent with the text as multipart/alternative")
	fs.Var(&attach, "attach", "attach a `file` (repeatable)")
	fs.Var(&headers, "header", "extra header `Name: value` (repeatable)")
	startTLS := fs.Bool("starttls", false, "require STARTTLS")
	insecure := fs.Bool("insecure", false, "with --starttls, do not verify the server certificate (tests only)")
	helo := fs.String("helo", "localhost", "HELO/EHLO name")
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if len(to) == 0 {
		return &exitError{2, errors.New("at least one --to is required")}
	}
	var msg bytes.Buffer
	if err := buildMessage(&msg, *from, to, *subject, *text, *html, attach, headers); err != nil {
		return err
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	var c *smtp.Client
	if *startTLS {
		host, _, _ := net.SplitHostPort(*addr)
		if c, err = smtp.NewClientStartTLS(conn, &tls.Config{ServerName: host, InsecureSkipVerify: *insecure}); err != nil {
			conn.Close()
			return fmt.Errorf("STARTTLS: %w", err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	if err := c.Hello(*helo); err != nil {
		return err
	}
	if err := c.Mail(*from, nil); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return fmt.Errorf("RCPT TO <%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg.Bytes()); err != nil {
		return err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	fmt.Printf("250 %s\n", resp.StatusText)
	return c.Quit()
}

// buildMessage writes an RFC 5322 message: text (and HTML) with attachments.
func buildMessage(w io.Writer, from string, to []string, subject, text, html string, attach, extra []string) error {
	var h mail.Header
	h.SetDate(time.Now())
	h.SetAddressList("From", []*mail.Address{{Address: from}})
	var rcpts []*mail.Address
	for _, r := range to {
		rcpts = append(rcpts, &mail.Address{Address: r})
	}
	h.SetAddressList("To", rcpts)
	h.SetSubject(subject)
	if err := h.GenerateMessageID(); err != nil {
		return err
	}
	for _, x := range extra {
		k, v, ok := strings.Cut(x, ":")
		if !ok {
			return &exitError{2, fmt.Errorf("--header %q: want Name: value", x)}
		}
		h.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	mw, err := mail.CreateWriter(w, h)
	if err != nil {
		return err
	}
	iw, err := mw.CreateInline()
	if err != nil {
		return err
	}
	bodies := [][2]string{{"text/plain", text}}
	if html != "" {
		bodies = append(bodies, [2]string{"text/html", html})
	}
	for _, b := range bodies {
		var ph mail.InlineHeader
		ph.Set("Content-Type", b[0]+"; charset=utf-8")
		pw, err := iw.CreatePart(ph)
		if err != nil {
			return err
		}
		io.WriteString(pw, b[1])
		pw.Close()
	}
	iw.Close()
	for _, path := range attach {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var ah mail.AttachmentHeader
		ct := mime.TypeByExtension(filepath.Ext(path))
		if ct == "" {
			ct = "application/octet-stream"
		}
		ah.Set("Content-Type", ct)
		ah.SetFilename(filepath.Base(path))
		aw, err := mw.CreateAttachment(ah)
		if err != nil {
			return err
		}
		aw.Write(data)
		aw.Close()
	}
	return mw.Close()
}
