package delivery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"strings"
	"time"

	"github.com/letterboxmail/letterbox/internal/fault"
	"github.com/letterboxmail/letterbox/internal/routing"
	"github.com/letterboxmail/letterbox/message"
)

// Attachment delivery defaults.
const (
	DefaultLinkTTL        = 24 * time.Hour
	DefaultInlineMaxBytes = 5 << 20
)

// payload is a request body that can be produced more than once: once to
// sign it, once to send it. Large bodies (raw messages, multipart forms
// with attachments) stream from the store both times instead of being
// held in memory.
type payload struct {
	contentType string
	write       func(ctx context.Context, w io.Writer) error
}

// payload builds the body of a webhook action in its format.
func (w *Webhooks) payload(ctx context.Context, j *Job, m *message.Message, a *routing.WebhookAction) (payload, error) {
	switch a.Format {
	case "raw":
		if w.Store == nil || m.RawKey == "" {
			return payload{}, fault.Permanentf("webhook: format raw needs the stored raw message")
		}
		return payload{contentType: "message/rfc822", write: func(ctx context.Context, dst io.Writer) error {
			return w.copyObject(ctx, dst, m.RawKey)
		}}, nil
	case "multipart":
		return payload{contentType: "multipart/form-data; boundary=" + boundary(j.ID), write: func(ctx context.Context, dst io.Writer) error {
			return w.multipart(ctx, dst, j, m)
		}}, nil
	}
	mm, err := w.withAttachments(ctx, m, a)
	if err != nil {
		return payload{}, err
	}
	body, err := Body(j, mm)
	if err != nil {
		return payload{}, fault.Permanent(err)
	}
	return payload{contentType: "application/json", write: func(_ context.Context, dst io.Writer) error {
		_, err := dst.Write(body)
		return err
	}}, nil
}

func (w *Webhooks) copyObject(ctx context.Context, dst io.Writer, key string) error {
	rc, _, err := w.Store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(dst, rc); err != nil {
		return fault.Temporary(fmt.Errorf("read %s: %w", key, err))
	}
	return nil
}

// withAttachments returns a copy of m whose attachments carry links or
// inline content, as the action asks, and whose truncated text parts carry
// a link to the whole part (never inline: they are over the parser's body
// limit by definition).
func (w *Webhooks) withAttachments(ctx context.Context, m *message.Message, a *routing.WebhookAction) (*message.Message, error) {
	mode := a.Attachments
	if mode == "" {
		mode = "links"
	}
	if mode == "metadata" || w.Store == nil || (len(m.Attachments) == 0 && !m.Truncated) {
		return m, nil
	}
	ttl := time.Duration(a.LinkTTL)
	if ttl <= 0 {
		ttl = DefaultLinkTTL
	}
	maxInline := int64(a.InlineMaxBytes)
	if maxInline <= 0 {
		maxInline = DefaultInlineMaxBytes
	}
	link := func(key string) (string, *time.Time, error) {
		u, err := w.Links.PresignGet(ctx, key, ttl)
		if err != nil {
			return "", nil, fault.Temporary(fmt.Errorf("link to %s: %w", key, err))
		}
		exp := time.Now().Add(ttl).UTC().Truncate(time.Second)
		return u, &exp, nil
	}
	cp := *m
	cp.Attachments = append([]message.Attachment(nil), m.Attachments...)
	for i := range cp.Attachments {
		att := &cp.Attachments[i]
		if att.Key == "" {
			continue
		}
		if mode == "inline" && att.Size <= maxInline {
			var buf bytes.Buffer
			if err := w.copyObject(ctx, &buf, att.Key); err != nil {
				return nil, err
			}
			att.ContentBase64 = base64.StdEncoding.EncodeToString(buf.Bytes())
			continue
		}
		if w.Links == nil {
			continue // no way to link: metadata only
		}
		var err error
		if att.URL, att.URLExpiresAt, err = link(att.Key); err != nil {
			return nil, err
		}
	}
	if m.Truncated && w.Links != nil {
		cp.Parts = append([]message.Part(nil), m.Parts...)
		for i := range cp.Parts {
			p := &cp.Parts[i]
			if p.Key == "" {
				continue
			}
			var err error
			if p.URL, p.URLExpiresAt, err = link(p.Key); err != nil {
				return nil, err
			}
		}
	}
	return &cp, nil
}

// boundary is stable for a job, so the body is the same on every pass.
func boundary(jobID string) string {
	sum := sha256.Sum256([]byte(jobID))
	return "letterbox-" + hex.EncodeToString(sum[:12])
}

// multipart writes a multipart/form-data body with the fields the common
// inbound-parse services post, for frameworks that expect forms: see
// docs/routes.md for the list. Attachment files stream from the store.
func (w *Webhooks) multipart(ctx context.Context, dst io.Writer, j *Job, m *message.Message) error {
	mw := multipart.NewWriter(dst)
	if err := mw.SetBoundary(boundary(j.ID)); err != nil {
		return fault.Permanent(err)
	}
	addrs := func(as []message.Address) string {
		var out []string
		for _, a := range as {
			if a.Name != "" {
				out = append(out, fmt.Sprintf("%q <%s>", a.Name, a.Address))
			} else {
				out = append(out, a.Address)
			}
		}
		return strings.Join(out, ", ")
	}
	from := ""
	if m.From != nil {
		from = addrs([]message.Address{*m.From})
	}
	full, _ := Body(j, m)
	env, _ := json.Marshal(m.Envelope)
	headers, _ := json.Marshal(m.Headers)
	info, _ := json.Marshal(m.Attachments)
	auth := ""
	if m.Auth != nil {
		auth = m.Auth.AuthenticationResults
	}
	fields := [][2]string{
		{"id", m.ID}, {"message_id", m.MessageID}, {"from", from}, {"to", addrs(m.To)}, {"cc", addrs(m.Cc)},
		{"subject", m.Subject}, {"date", m.Date}, {"text", m.Text}, {"html", m.HTML}, {"stripped_text", m.StrippedText},
		{"sender", m.Envelope.MailFrom}, {"recipients", strings.Join(m.Envelope.RcptTo, ", ")}, {"sender_ip", m.Envelope.ClientIP},
		{"envelope", string(env)}, {"headers", string(headers)}, {"authentication_results", auth},
		{"attachments", fmt.Sprint(len(m.Attachments))}, {"attachment_info", string(info)}, {"message", string(full)},
	}
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return err
		}
	}
	for i, att := range m.Attachments {
		if att.Key == "" || w.Store == nil {
			continue
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="attachment%d"; filename=%q`, i+1, att.Filename))
		h.Set("Content-Type", att.ContentType)
		part, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		if err := w.copyObject(ctx, part, att.Key); err != nil {
			return err
		}
	}
	return mw.Close()
}

// sign produces the body once to sign it, returning the signature header
// and the body length.
func (p payload) sign(ctx context.Context, s interface {
	io.Writer
	Header() string
	Len() int64
}) (string, int64, error) {
	if err := p.write(ctx, s); err != nil {
		return "", 0, err
	}
	return s.Header(), s.Len(), nil
}

// reader produces the body again for sending. The goroutine writing it
// ends when the body is fully read or the reader is closed.
func (p payload) reader(ctx context.Context) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(p.write(ctx, pw)) }()
	return pr
}
